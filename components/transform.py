"""TFX's Transform, writing the transformed examples as uncompressed TFRecords.

TFX's Transform always GZIPs its TFRecords. Ours hold a 128x128 gray image
per photo (16 KiB): GZIP saves about a fifth of the bytes and costs the stage
about 4 s of its ~14 s on the demo's 6,000 photos (single-threaded zlib at
level 6), and every reader (Trainer, pusher) pays to inflate them again.
This executor writes the same records without compression, named
``transformed_examples-NNNNN-of-MMMMM.tfrecord``. Readers tell the two apart
by the name, as TFX's own readers do (``*.gz`` is GZIP, anything else is
plain): :func:`shelf_model.features.compression_type`. Outputs of earlier
versions (``*.gz``) stay readable.

Everything else is TFX's Transform unchanged: same component spec, inputs,
outputs and execution properties; only the writing step differs.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.transform import executor as transform_executor
from tfx.components.transform import labels
from tfx.components.transform.component import Transform as TfxTransform
from tfx.dsl.components.base import executor_spec

from components import ArtifactDict, ExecProperties, tfx_hooks
from shelf_model.features import TRANSFORMED_SUFFIX

# TFX's class (Executor.Do rebinds the module's name to ours while it runs).
_TfxProcessor = transform_executor.TransformProcessor


class PlainRecordsProcessor(_TfxProcessor):
    """TFX's TransformProcessor; TFRecords are written without GZIP (Parquet as TFX writes it)."""

    @staticmethod
    @beam.ptransform_fn
    @beam.typehints.with_input_types(tuple[pa.RecordBatch, dict[str, pa.Array]])
    def _EncodeAndWrite(  # noqa: N802 - TFX's name
        pcoll: beam.PCollection, schema: schema_pb2.Schema, file_format: str, output_path: str
    ) -> beam.pvalue.PDone:
        if file_format != labels.FORMAT_TFRECORD:
            return pcoll | "EncodeAndWriteTFX" >> _TfxProcessor._EncodeAndWrite(  # noqa: SLF001
                schema=schema, file_format=file_format, output_path=output_path
            )
        to_examples = _TfxProcessor._RecordBatchToExamplesFn(schema)  # noqa: SLF001
        return (
            pcoll
            | "EncodeAndSerialize" >> beam.ParDo(to_examples)
            | "ExtractExamples" >> beam.Values()
            | "WriteToTFRecord"
            >> beam.io.WriteToTFRecord(
                output_path,
                file_name_suffix=TRANSFORMED_SUFFIX,
                compression_type=beam.io.filesystem.CompressionTypes.UNCOMPRESSED,
            )
        )


class Executor(transform_executor.Executor):
    """TFX's Transform executor with :class:`PlainRecordsProcessor`."""

    def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict, exec_properties: ExecProperties) -> None:
        """TFX's Do; the transformed examples come out as plain ``*.tfrecord`` files."""
        # TFX's Do builds `TransformProcessor()` by the module's name and offers no other hook for the writer.
        with tfx_hooks.rebound(transform_executor, "TransformProcessor", PlainRecordsProcessor):
            super().Do(input_dict, output_dict, exec_properties)


class Transform(TfxTransform):
    """TFX's Transform component with :class:`Executor` (same id, spec and arguments)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
