"""The span window's ExampleGen executor: every span of the resolved pattern list, checked, written plain.

It reads every pattern of the list (TFX's own import transform per span,
flattened) before TFX's hash split; each input file is read and each photo
checked in a Beam step of its own (:mod:`components.example_gen.record_check`),
the dropped ones recorded in ``bad_records.json``. When no driver ran (the
open-source KFP backend never runs ``preCacheCheck``), it resolves the window
itself. It writes the splits as plain TFRecords
(``data_tfrecord-NNNNN-of-MMMMM.tfrecord``): the photos are JPEG/PNG already,
so TFX's GZIP saved about 5% of the bytes for ~1.5 s per 6,000 photos, and
every later stage paid to inflate them again. TFX's readers (StatisticsGen,
Transform, Evaluator) and ours tell plain from GZIP by the file name.
"""

from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from absl import logging
from tfx.components.example_gen import base_example_gen_executor, write_split
from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import ArtifactDict, ExecProperties, tfx_hooks
from components.example_gen import driver, record_check
from shelf_data import bad_records, window

# Execution property: the largest fraction of dropped (unusable) photos per split; recorded in bad_records.json.
MAX_BAD_FRACTION_KEY = "max_bad_fraction"
# Output files: TFX's name, without GZIP (see the module docstring).
EXAMPLES_FILE_PREFIX = "data_tfrecord"
EXAMPLES_SUFFIX = ".tfrecord"
_TFX_WRITE_SPLIT = write_split.WriteSplit


@beam.ptransform_fn
def WritePlainSplit(  # noqa: N802 - a PTransform, in place of TFX's WriteSplit
    example_split: beam.pvalue.PCollection,
    output_split_path: str,
    output_format: Any,
    exec_properties: dict[str, Any] | None = None,
) -> beam.pvalue.PDone:
    """TFX's ``WriteSplit`` (serialize, shuffle, write), writing uncompressed TFRecords; Parquet as TFX does."""
    payload = (exec_properties or {}).get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload == example_gen_pb2.PayloadFormat.FORMAT_PARQUET:
        return example_split | "TFXWriteSplit" >> _TFX_WRITE_SPLIT(output_split_path, output_format, exec_properties)
    return (
        example_split
        | "MaybeSerialize" >> beam.ParDo(write_split.MaybeSerialize())
        | "Shuffle" >> beam.transforms.Reshuffle()
        | "Write"
        >> beam.io.WriteToTFRecord(
            os.path.join(output_split_path, EXAMPLES_FILE_PREFIX),
            file_name_suffix=EXAMPLES_SUFFIX,
            compression_type=beam.io.filesystem.CompressionTypes.UNCOMPRESSED,
        )
    )


class Executor(import_executor.Executor):
    """TFX's ImportExampleGen executor, reading every span of the resolved pattern list."""

    def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict, exec_properties: ExecProperties) -> None:
        """Resolve the window here when no driver did (open-source KFP), then run TFX's executor."""
        config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[driver.INPUT_CONFIG_KEY], config)
        if any(window.is_unresolved(split.pattern) for split in config.splits):
            logging.warning("ExampleGen: no driver resolved the spans (preCacheCheck not run); resolving them here")
            config, resolution = driver.resolve_exec_properties(exec_properties)
            exec_properties.update(driver.resolved_exec_properties(resolution, config))
            for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
                tfx_driver.update_output_artifact(exec_properties, artifact.mlmd_artifact)
                artifact.set_string_custom_property(window.SPANS_PROPERTY, resolution.spans_text)
        self._examples_uri = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY]).uri
        # TFX's Do writes each split with `write_split.WriteSplit`, by the module's name: ours writes them plain.
        with tfx_hooks.rebound(write_split, "WriteSplit", WritePlainSplit):
            super().Do(input_dict, output_dict, exec_properties)

    def GenerateExamplesByBeam(  # noqa: N802 - TFX's name
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        """Read every input file in a DoFn, drop unusable photos, hash-split the rest as TFX does.

        Dropped records and counts go to ``<examples uri>/bad_records.json`` (:mod:`shelf_data.bad_records`).
        Payloads other than tf.Example, or no output split config, fall back to TFX's own reading.
        """
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[driver.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        examples_uri = getattr(self, "_examples_uri", None)
        if (
            not output_config.split_config.splits
            or len(input_config.splits) != 1
            or payload not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE)
            or examples_uri is None
        ):
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        input_base = exec_properties[driver.INPUT_BASE_KEY]
        max_bad = exec_properties.get(MAX_BAD_FRACTION_KEY)
        max_bad = bad_records.DEFAULT_MAX_BAD_FRACTION if max_bad is None else float(max_bad)
        files = window.input_files(input_base, window.decode_patterns(input_config.splits[0].pattern))
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        logging.info("ExampleGen: reading and checking %d file(s): %s", len(files), shown)
        split_config = output_config.split_config
        names = [split.name for split in split_config.splits]
        buckets, total = [], 0
        for split in split_config.splits:
            total += split.hash_buckets
            buckets.append(total)
        checked = (
            pipeline
            | "InputFiles" >> beam.Create(files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadAndCheck"
            >> beam.ParDo(
                record_check.ReadAndCheckFile(input_base, names, buckets, split_config.SerializeToString())
            ).with_outputs(record_check.BAD_TAG, record_check.COUNTS_TAG, main="examples")
        )
        dropped = checked[record_check.BAD_TAG] | "ListDropped" >> beam.combiners.ToList()
        counts = checked[record_check.COUNTS_TAG] | "ListCounts" >> beam.combiners.ToList()
        _ = (
            pipeline
            | "ReportOnce" >> beam.Create([None])
            | "WriteBadRecords"
            >> beam.Map(
                record_check.write_report,
                examples_uri=examples_uri,
                input_base=input_base,
                max_bad_fraction=max_bad,
                split_names=names,
                dropped=beam.pvalue.AsSingleton(dropped),
                counts=beam.pvalue.AsSingleton(counts),
            )
        )
        # compatibility shim: docs/design-decisions.md#compatibility-shims
        parts = checked["examples"] | "SplitData" >> beam.Partition(
            base_example_gen_executor._PartitionFn,  # noqa: SLF001 - TFX's own split, so splits match TFX's
            len(buckets),
            buckets,
            split_config,
        )
        return {name: parts[i] for i, name in enumerate(names)}

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """TFX's import transform once per span pattern, flattened."""
        read_one = super().GetInputSourceToExamplePTransform()

        @beam.ptransform_fn
        @beam.typehints.with_input_types(beam.Pipeline)
        def ReadSpans(  # noqa: N802 - a PTransform
            pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
        ) -> beam.pvalue.PCollection:
            patterns = window.decode_patterns(split_pattern)
            if len(patterns) == 1:
                return pipeline | read_one(exec_properties, split_pattern)
            base = exec_properties[driver.INPUT_BASE_KEY]
            logging.info("ExampleGen: reading %d span patterns under %s: %s", len(patterns), base, patterns)
            parts = [pipeline | f"ReadSpan[{i}]" >> read_one(exec_properties, p) for i, p in enumerate(patterns)]
            return parts | "FlattenSpans" >> beam.Flatten()

        return ReadSpans
