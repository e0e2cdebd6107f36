"""Drift between the newest span a run reads and the span before it: the ``SpanDrift`` component.

Compares span N (the newest of the run's selection) with span P (the newest span under ``input_base``
before N, read or not): value mixes with TFDV's drift comparators (``infinity_norm``,
``jensen_shannon_divergence``) on a copy of the curated schema, and image width, height and gray brightness,
which TFDV does not look into. The result is ``drift.json`` (:mod:`shelf_data.drift_report`) in an
``ExampleAnomalies`` artifact with ``drifted``, ``current_span`` and ``previous_span`` properties; a check
above its threshold stops the run only with ``stop_on_drift``.

See docs/pipeline.md#drift-between-spans for the checks, their defaults and what the run prints.
"""

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.dsl.component.experimental.annotations import BeamComponentParameter, InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.drift_settings import DriftSettings
from shelf_data import contract, window
from shelf_data import spans as spans_lib
from shelf_data.drift_report import Check, DriftReport, write_report

MEASURES = ("infinity_norm", "jensen_shannon_divergence")
IMAGE_MEASURES = ("width", "height", "brightness")
IMAGE_STATISTICS = ("mean", "p10", "p50", "p90")
_TFDV_MEASURE = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "infinity_norm",
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "jensen_shannon_divergence",
}
_MAX_VALUE = re.compile(r"The feature value with maximum difference is: (.*)$")


class SpanDriftError(RuntimeError):
    """The newest span drifted from the one before it and ``drift.stop_on_drift`` is true."""


# --- Feature distributions (TFDV) ---------------------------------------------------


def drift_schema(schema: schema_pb2.Schema, settings: DriftSettings) -> schema_pb2.Schema:
    """A copy of ``schema`` with only the compared features, each with its drift comparators.

    Integer features are marked categorical in the copy so TFDV counts their values
    (``infinity_norm`` compares value shares).

    Raises:
        ValueError: a compared feature is not in the schema.
    """
    known = {f.name: f for f in schema.feature}
    missing = [f for f in settings.features if f not in known]
    if missing:
        raise ValueError(f"drift compares {missing}, which the schema does not have (features: {sorted(known)})")
    copy = schema_pb2.Schema()
    copy.CopyFrom(schema)
    del copy.feature[:]
    for name in settings.features:
        feature = copy.feature.add()
        feature.CopyFrom(known[name])
        if feature.type == schema_pb2.INT:
            feature.int_domain.is_categorical = True
        if name in settings.infinity_norm:
            feature.drift_comparator.infinity_norm.threshold = settings.infinity_norm[name]
        if name in settings.jensen_shannon_divergence:
            feature.drift_comparator.jensen_shannon_divergence.threshold = settings.jensen_shannon_divergence[name]
    return copy


def compare_statistics(
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> list[Check]:
    """TFDV's drift comparison of two spans' statistics under ``schema`` (from :func:`drift_schema`)."""
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    details = {}
    for key, info in anomalies.anomaly_info.items():
        match = _MAX_VALUE.search(info.description)
        if match:
            details[key] = f"largest change: {match[1]!r}"
    checks = []
    for info in anomalies.drift_skew_info:
        name = ".".join(info.path.step)
        for m in info.drift_measurements:
            measure = _TFDV_MEASURE.get(m.type, anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type).lower())
            checks.append(Check(name, measure, float(m.value), float(m.threshold), detail=details.get(name, "")))
    order = {name: i for i, name in enumerate(f.name for f in schema.feature)}
    return sorted(checks, key=lambda c: (order.get(c.name, len(order)), c.measure))


def span_statistics(
    patterns: Mapping[int, str],
    schema: schema_pb2.Schema,
    pipeline: beam.Pipeline,
    out_dir: str,
) -> dict[int, statistics_pb2.DatasetFeatureStatisticsList]:
    """TFDV statistics of each span's files (``span -> file pattern``), in one run of ``pipeline``.

    Only the features of ``schema`` are decoded: the image bytes are skipped.
    """
    from tfx_bsl.public import tfxio

    options = tfdv.StatsOptions(schema=schema, feature_allowlist=[f.name for f in schema.feature])
    paths = {span: os.path.join(out_dir, f"span-{span}", "FeatureStats.pb") for span in patterns}
    with pipeline as p:
        for span, pattern in patterns.items():
            source = tfxio.TFExampleRecord(file_pattern=pattern, schema=schema, telemetry_descriptors=["shelf_audit"])
            _ = (
                p
                | f"Read[span-{span}]" >> source.BeamSource()
                | f"Statistics[span-{span}]" >> tfdv.GenerateStatistics(options)
                | f"Write[span-{span}]" >> tfdv.WriteStatisticsToBinaryFile(paths[span])
            )
    return {span: tfdv.load_stats_binary(path) for span, path in paths.items()}


# --- Images ---------------------------------------------------------------------


def sample_images(file_pattern: str, limit: int) -> list[bytes]:
    """Up to ``limit`` encoded images of the files matching ``file_pattern``, taken round-robin across files."""
    files = sorted(tf.io.gfile.glob(file_pattern))
    readers: list[Iterator[tf.Tensor]] = [
        iter(tf.data.TFRecordDataset(f, compression_type="GZIP" if f.endswith(".gz") else "")) for f in files
    ]
    images: list[bytes] = []
    while readers and len(images) < limit:
        for reader in list(readers):
            raw = next(reader, None)
            if raw is None:
                readers.remove(reader)
                continue
            feature = tf.train.Example.FromString(raw.numpy()).features.feature.get(contract.IMAGE_KEY)
            if feature is not None and feature.bytes_list.value:
                images.append(feature.bytes_list.value[0])
            if len(images) >= limit:
                break
    return images


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _measure(encoded: tf.Tensor) -> tf.Tensor:
    # The same decode as Transform and the DataGate: to one gray channel.
    image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    shape = tf.cast(tf.shape(image), tf.float32)
    return tf.stack([shape[1], shape[0], tf.reduce_mean(tf.cast(image, tf.float32))])


def image_measures(images: Iterable[bytes]) -> dict[str, np.ndarray]:
    """Width, height and mean gray brightness (0..255) of each image; undecodable ones are left out."""
    rows = []
    for encoded in images:
        try:
            rows.append(_measure(tf.constant(encoded)).numpy())
        except (tf.errors.InvalidArgumentError, ValueError):
            continue  # the DataGate names undecodable records; drift only measures photos
    table = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return {name: table[:, i] for i, name in enumerate(IMAGE_MEASURES)}


def summarize_images(measures: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and 10th, 50th, 90th percentiles of each image measure (empty when there are no images)."""
    summary = {}
    for name, values in measures.items():
        if len(values):
            p10, p50, p90 = np.percentile(values, [10, 50, 90])
            summary[name] = {"mean": float(values.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}
    return summary


def compare_images(
    previous: Mapping[str, Mapping[str, float]], current: Mapping[str, Mapping[str, float]], threshold: float
) -> list[Check]:
    """One check per image measure: the statistic with the largest relative change.

    Relative change is ``|current - previous| / max(|previous|, 1)`` (pixels and
    gray levels: the floor keeps a near-black span from dividing by ~0).
    """
    checks = []
    for name in IMAGE_MEASURES:
        if name not in previous or name not in current:
            continue
        changes = {
            stat: abs(current[name][stat] - previous[name][stat]) / max(abs(previous[name][stat]), 1.0)
            for stat in IMAGE_STATISTICS
        }
        worst = max(IMAGE_STATISTICS, key=lambda s: changes[s])
        checks.append(
            Check(
                f"image {name}",
                f"{worst} relative change",
                changes[worst],
                threshold,
                previous=previous[name][worst],
                current=current[name][worst],
            )
        )
    return checks


# --- The whole check ------------------------------------------------------------------


def previous_span(present: Sequence[int], current: int) -> int | None:
    """The newest span of ``present`` before ``current``, or None."""
    earlier = [s for s in present if s < current]
    return max(earlier) if earlier else None


def span_pattern(input_base: str, split_pattern: str, span: int) -> str:
    """The full file pattern of one span, resolved by TFX's input processor (``{VERSION}`` too)."""
    one = spans_lib.SpanSelection(spans_lib.RANGE, first=span, last=span)
    resolution = window.resolve(input_base, window.input_config(split_pattern), one)
    return os.path.join(input_base, resolution.patterns[0])


def check_drift(
    input_base: str,
    split_pattern: str,
    current: int,
    schema: schema_pb2.Schema,
    settings: DriftSettings,
    pipeline: beam.Pipeline | None,
    out_dir: str,
) -> DriftReport:
    """Compare span ``current`` with the span before it under ``input_base``.

    Args:
        input_base: the folder holding the spans.
        split_pattern: ExampleGen's split pattern (:data:`shelf_data.window.SPLIT_PATTERN`).
        current: the newest span of the run.
        schema: the curated schema.
        settings: thresholds and sample size.
        pipeline: the Beam pipeline for TFDV's statistics (unused when there is no previous span).
        out_dir: where both spans' statistics are written.
    """
    present = window.spans_present(input_base, window.input_config(split_pattern).splits[0])
    previous = previous_span(present, current)
    if previous is None:
        note = f"no span before {current} under {input_base} (spans present: {spans_lib.format_spans(present)})"
        return DriftReport(current, None, stop_on_drift=settings.stop_on_drift, note=note)
    patterns = {span: span_pattern(input_base, split_pattern, span) for span in (previous, current)}
    checks: list[Check] = []
    if settings.features:
        if pipeline is None:
            raise ValueError("comparing feature distributions needs a Beam pipeline")
        copy = drift_schema(schema, settings)
        statistics = span_statistics(patterns, copy, pipeline, out_dir)
        checks += compare_statistics(statistics[previous], statistics[current], copy)
    images = {span: image_measures(sample_images(patterns[span], settings.image_sample)) for span in patterns}
    summaries = {span: summarize_images(m) for span, m in images.items()}
    checks += compare_images(summaries[previous], summaries[current], settings.image_relative_change)
    sampled = {str(span): int(len(m["width"])) for span, m in images.items()}
    return DriftReport(current, previous, tuple(checks), sampled, settings.stop_on_drift)


@component(use_beam=True)
def SpanDrift(  # noqa: N802
    examples: InputArtifact[standard_artifacts.Examples],
    schema: InputArtifact[standard_artifacts.Schema],
    drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
    input_base: Parameter[str],
    split_pattern: Parameter[str],
    settings: Parameter[str],
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Compare the newest span of ``examples`` with the span before it; raise SpanDriftError if asked to."""
    config = DriftSettings.from_json(settings)
    read = window.examples_spans(examples)
    if not read:
        raise ValueError(f"the Examples artifact {examples.uri} has no span property: cannot tell the newest span")
    curated = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    report = check_drift(input_base, split_pattern, read[-1], curated, config, beam_pipeline, drift.uri)
    write_report(report, drift.uri)
    drift.set_int_custom_property("drifted", int(bool(report.drifted)))
    drift.set_int_custom_property("current_span", report.current_span)
    if report.previous_span is not None:
        drift.set_int_custom_property("previous_span", report.previous_span)
    logging.info("%s\n  %s", report.headline(), "\n  ".join(c.describe() for c in report.checks))
    if report.drifted and config.stop_on_drift:
        raise SpanDriftError(report.error_message())
