"""A component that stops the run before Transform when the data is not fit to train on.

ExampleValidator only records anomalies; Transform depends on this gate, so bad data never reaches
training. The gate stops the run on schema anomalies, on more dropped photos than ``data.max_bad_fraction``
allows (:func:`shelf_data.bad_records.over_limit`) and on a class with fewer than ``data.min_class_count``
photos in ``train`` or ``eval``; the error lists each problem. Below the limit, dropped photos are logged
here and reported in the run summary and the manifest.

See docs/pipeline.md#the-data-gate and docs/running.md#bad-records-broken-files-and-empty-spans.
"""

import logging
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from shelf_data import bad_records, contract, splits
from shelf_data.validate import format_anomalies

ANOMALIES_FILE = "SchemaDiff.pb"
# Dropped records listed in the error; the totals are always given.
MAX_LISTED = 20
# Photos of each class required in train and in eval (data.min_class_count).
DEFAULT_MIN_CLASS_COUNT = 1
# The splits every class must be present in.
CLASS_SPLITS = (splits.TRAIN, splits.EVAL)

log = logging.getLogger("shelf_audit.data_gate")


class DataAnomaliesError(RuntimeError):
    """The examples break the curated schema, hold too many unusable photos, or lack a class."""


def anomaly_lines(artifact: standard_artifacts.ExampleAnomalies) -> list[str]:
    """Readable anomaly lines of every split of an ExampleAnomalies artifact."""
    lines = []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        lines += [f"{split}: {line}" for line in format_anomalies(anomalies)]
    return lines


def bad_record_lines(report: dict, path: str = "") -> list[str]:
    """Lines of the error when a split's dropped fraction is above the report's ``max_bad_fraction``, else []."""
    over = bad_records.over_limit(report)
    if not over:
        return []
    limit = report.get("max_bad_fraction", bad_records.DEFAULT_MAX_BAD_FRACTION)
    lines = [
        f"{report.get('dropped', 0)} of {report.get('read', 0)} records have an unusable image "
        f"({bad_records.format_reasons(report)}), above data.max_bad_fraction = {limit:g} in "
        + ", ".join(over)
        + (f"; full list: {path}" if path else "")
    ]
    records = report.get("records", [])
    lines += [bad_records.format_record(r) for r in records[:MAX_LISTED]]
    if report.get("dropped", 0) > min(len(records), MAX_LISTED):
        lines.append(f"... and {report['dropped'] - min(len(records), MAX_LISTED)} more")
    return lines


def class_count_lines(report: dict, min_class_count: int) -> list[str]:
    """A line per class with fewer than ``min_class_count`` usable photos in train or eval (report's ``labels``)."""
    labels = report.get("labels")
    if not labels or min_class_count <= 0:
        return []
    lines = []
    for split in CLASS_SPLITS:
        counts = labels.get(split, {})
        for label in contract.LABELS:
            n = int(counts.get(label, 0))
            if n < min_class_count:
                lines.append(
                    f"{split}: class {label!r} has {n} photo(s), fewer than data.min_class_count = {min_class_count}"
                )
    if lines:
        found = "; ".join(
            f"{s}: " + (", ".join(f"{k} {v}" for k, v in labels.get(s, {}).items()) or "none") for s in CLASS_SPLITS
        )
        lines.append(f"photos per class: {found}")
    return lines


def check(anomaly_text: list[str], report: dict | None, min_class_count: int, report_path: str = "") -> list[str]:
    """Every reason to stop the run, as lines ([] = the data may be trained on)."""
    problems = []
    if anomaly_text:
        problems += [
            "the examples break the data contract (schemas/schema.pbtxt):",
            *(f"  {line}" for line in anomaly_text),
        ]
    if report is not None:
        bad = bad_record_lines(report, report_path)
        if bad:
            problems += [bad[0] + ":", *(f"  {line}" for line in bad[1:])]
        classes = class_count_lines(report, min_class_count)
        if classes:
            problems += ["a class is missing or too rare to train and gate on:", *(f"  {line}" for line in classes)]
    return problems


@component
def DataGate(  # noqa: N802
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    examples: InputArtifact[standard_artifacts.Examples],
    min_class_count: Parameter[int] = DEFAULT_MIN_CLASS_COUNT,
) -> None:
    """Raise DataAnomaliesError listing every problem; pass (logging any dropped photos) otherwise."""
    report = bad_records.read_bad_records(examples.uri)
    path = bad_records.bad_records_path(examples.uri)
    if report is None:
        log.warning("no %s in %s: no record was checked for unusable images", bad_records.FILE_NAME, examples.uri)
    elif report.get("dropped"):
        log.warning("%s", bad_records.summary_line(report, path))
    problems = check(anomaly_lines(anomalies), report, min_class_count, path)
    if problems:
        raise DataAnomaliesError(
            "the data is not fit to train on; run stopped before Transform:\n" + "\n".join(problems)
        )
