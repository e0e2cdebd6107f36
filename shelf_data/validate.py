"""Validate TFRecords against the curated schema with TFDV.

The pipeline's ExampleValidator does the same check inside TFX; this module
gives tests and tools the identical check without a pipeline run, and
:func:`format_anomalies` turns TFDV's proto into lines a person can act on
(the pipeline reuses it to stop a run with a readable list).

TFDV and TensorFlow are imported lazily so that importing this module (for
:func:`load_schema` or :func:`format_anomalies`) stays cheap.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from schemas import SCHEMA_PATH

# The curated schema ships inside the schemas package (package data), so an
# installed wheel, a container image and a checkout all read the same file.
DEFAULT_SCHEMA_PATH = SCHEMA_PATH

TRAINING = "TRAINING"
SERVING = "SERVING"


def load_schema(path: str | os.PathLike[str] | None = None) -> schema_pb2.Schema:
    """Parse a TFMD ``Schema`` text proto.

    Args:
        path: the ``.pbtxt`` file; ``None`` loads the repository's
            ``schemas/schema.pbtxt``.

    Returns:
        The parsed schema.

    Raises:
        FileNotFoundError: when the file does not exist.
        google.protobuf.text_format.ParseError: when it is not a valid Schema.
    """
    schema_path = Path(path) if path is not None else DEFAULT_SCHEMA_PATH
    if not schema_path.is_file():
        raise FileNotFoundError(f"schema file not found. Received path={str(schema_path)!r}")
    return text_format.Parse(schema_path.read_text(encoding="utf-8"), schema_pb2.Schema())


def validate_records(
    pattern: str,
    schema: schema_pb2.Schema | None = None,
    environment: str = TRAINING,
) -> anomalies_pb2.Anomalies:
    """Compute TFDV statistics over ``pattern`` and validate them against ``schema``.

    Args:
        pattern: glob of TFRecord files of ``tf.train.Example``, e.g.
            ``data/span-1/*.tfrecord*``. GZIP is detected per file from the
            ``.gz`` suffix (Beam's AUTO compression), so plain and GZIP files
            may be mixed.
        schema: the schema to check; ``None`` uses :func:`load_schema`.
        environment: schema environment (``TRAINING`` expects ``label``).

    Returns:
        The anomalies proto; ``anomaly_info`` is empty when the data conforms.

    Raises:
        FileNotFoundError: when ``pattern`` matches no file (TFDV would
            otherwise fail deep inside Beam).
    """
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    if not tf.io.gfile.glob(pattern):
        raise FileNotFoundError(f"no TFRecord files match. Received pattern={pattern!r}")
    schema = schema if schema is not None else load_schema()
    # generate_statistics_from_tfrecord reads through TFXIO, whose Beam source
    # uses AUTO compression: ``*.gz`` files are read as GZIP, others as plain.
    # Write the statistics into a folder we remove, instead of the fresh
    # mkdtemp() TFDV leaves behind on every call.
    with tempfile.TemporaryDirectory(prefix="shelf-validate-") as tmp:
        stats = tfdv.generate_statistics_from_tfrecord(
            data_location=pattern,
            output_path=os.path.join(tmp, "stats.tfrecord"),
        )
    return tfdv.validate_statistics(stats, schema, environment=environment)


def format_anomalies(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """Return one readable line per anomaly: ``feature: short description: detail``.

    Lines are sorted by feature name so the output is stable. Dataset-level
    anomalies (e.g. too few examples) are reported under ``<dataset>``.
    """
    lines: list[str] = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        details = [r.description for r in info.reason if r.description] or [info.description]
        short = info.short_description or (info.reason[0].short_description if info.reason else "anomaly")
        lines.append(f"{feature}: {short}: {'; '.join(d for d in details if d)}")
    dataset = anomalies.dataset_anomaly_info
    if dataset.reason or dataset.description:
        details = [r.description for r in dataset.reason if r.description] or [dataset.description]
        short = dataset.short_description or (dataset.reason[0].short_description if dataset.reason else "anomaly")
        lines.append(f"<dataset>: {short}: {'; '.join(d for d in details if d)}")
    return lines
