"""ImportExampleGen over a window of spans: the latest, the last K, or a range.

TFX 1.16's ExampleGen reads exactly one span per execution: its input
processor (``tfx/components/example_gen/input_processor.py``) refuses a
``static_range`` whose start and end differ and a ``rolling_range`` of more
than one span. :class:`SpanWindowExampleGen` is TFX's ImportExampleGen with
two small pieces swapped in:

* the **driver** resolves the run's selection (``shelf_data.spans``) to the
  spans present under ``input_base``, then lets TFX's own
  ``FileBasedInputProcessor`` resolve each span as a single-span
  ``static_range`` (pattern, ``{VERSION}``, fingerprint: TFX's code). A
  window of several spans is written into the split pattern as
  ``{span-3/*.tfrecord*,span-4/*.tfrecord*}``; the execution records the
  concrete ``range_config`` (first to last span read), ``span`` (the newest,
  as TFX does for one span) and the Examples artifact gets a ``spans``
  custom property (``"3,4"``). Local runs use :class:`Driver`; Kubeflow runs
  :mod:`components.example_gen_driver` as the task's ``preCacheCheck``.
* the **executor** reads every pattern of that list (TFX's own import
  transform per span, flattened) before TFX's hash split. When no driver ran
  (the open-source KFP backend never runs ``preCacheCheck``), it resolves
  the window itself. It writes the splits as plain TFRecords
  (``data_tfrecord-NNNNN-of-MMMMM.tfrecord``): the photos are JPEG/PNG
  already, so TFX's GZIP saved about 5% of the bytes for ~1.5 s per 6,000
  photos, and every later stage paid to inflate them again. TFX's readers
  (StatisticsGen, Transform, Evaluator) and ours tell plain from GZIP by the
  file name.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from typing import Any

import apache_beam as beam
from absl import logging
from tfx.components.example_gen import base_example_gen_executor, input_processor, utils, write_split
from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen.import_example_gen import component as import_component
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import record_check, tfx_hooks
from shelf_data import bad_records
from shelf_data import spans as spans_lib

SPLIT_NAME = "single_split"
SPLIT_PATTERN = "span-{SPAN}/*.tfrecord*"
# Custom property of the Examples artifact: every span read, e.g. "3,4,5".
SPANS_PROPERTY = "spans"
INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
RANGE_CONFIG_KEY = standard_component_specs.RANGE_CONFIG_KEY
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
# Execution property: the largest fraction of dropped (unusable) photos per split; recorded in bad_records.json.
MAX_BAD_FRACTION_KEY = "max_bad_fraction"
# Output files: TFX's name, without GZIP (see the module docstring).
EXAMPLES_FILE_PREFIX = "data_tfrecord"
EXAMPLES_SUFFIX = ".tfrecord"
# TFX's pattern specs: {SPAN}, {SPAN:width}, {VERSION}, {VERSION:width}, {YYYY}, {MM}, {DD}.
_SPECS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}|\{(YYYY|MM|DD)\}")


def input_config(pattern: str = SPLIT_PATTERN) -> example_gen_pb2.Input:
    """The one input split of the photos: ``span-{SPAN}/*.tfrecord*`` under ``input_base``."""
    return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=pattern)])


def spans_present(input_base: str, split: example_gen_pb2.Input.Split) -> list[int]:
    """Every span with at least one file matching ``split``'s pattern under ``input_base``, ascending.

    Uses TFX's own span matching (the glob and regex its driver builds from ``{SPAN}``).

    Raises:
        ValueError: the pattern has no ``{SPAN}`` (or date) spec.
    """
    is_span, is_date, is_version = utils.verify_split_pattern_specs(split)
    if not (is_span or is_date):
        raise ValueError(f"split pattern {split.pattern!r} has no {utils.SPAN_SPEC}: it cannot select spans")
    glob, regex = utils._create_matching_glob_and_regex(  # noqa: SLF001 - TFX's span matcher, pinned TFX 1.16
        uri=input_base,
        split=split,
        is_match_span=is_span,
        is_match_date=is_date,
        is_match_version=is_version,
        range_config=None,
    )
    found = set()
    for path in fileio.glob(glob):
        _, span, _, _ = utils._find_matched_span_version_from_path(  # noqa: SLF001
            path, regex, is_span, is_date, is_version
        )
        found.add(span)
    return sorted(found)


_SPAN_FOLDER = re.compile(r"span-(\d+)")


def span_folders(input_base: str) -> dict[int, str]:
    """``{span: folder name}`` of the ``span-N`` folders directly under ``input_base`` (files or not)."""
    if not fileio.exists(input_base) or not fileio.isdir(input_base):
        return {}
    found = {}
    for name in fileio.listdir(input_base):
        name = name.rstrip("/")
        match = _SPAN_FOLDER.fullmatch(name)
        if match and fileio.isdir(os.path.join(input_base, name)):
            found[int(match[1])] = name
    return found


def _file_glob(pattern: str) -> str:
    """The file part of a split pattern: ``span-{SPAN}/*.tfrecord*`` -> ``*.tfrecord*``."""
    return pattern.rsplit("/", 1)[-1]


def _found(folder: str, limit: int = 8) -> str:
    """What a folder holds, for an error: ``found: a, b, c``, ``it is empty`` or ``it does not exist``."""
    if not fileio.exists(folder):
        return "it does not exist"
    names = sorted(n.rstrip("/") for n in fileio.listdir(folder))
    if not names:
        return "it is empty"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "found: " + ", ".join(names[:limit]) + more


def input_files(input_base: str, patterns: list[str]) -> list[str]:
    """Every file the split patterns (relative to ``input_base``) match, sorted.

    Raises:
        ValueError: a pattern matches no file (names the data root, the pattern and what the folder holds).
    """
    files = []
    for pattern in patterns:
        matched = sorted(fileio.glob(os.path.join(input_base, pattern)))
        if not matched:
            folder = os.path.dirname(os.path.join(input_base, pattern))
            raise ValueError(f"no input file matches {pattern} under the data root {input_base} ({_found(folder)})")
        files += matched
    return files


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The spans a run reads and what ExampleGen records about them."""

    selection: spans_lib.SpanSelection
    spans: tuple[int, ...]  # ascending
    patterns: tuple[str, ...]  # one resolved split pattern per span, relative to input_base
    version: int | None  # of the newest span ({VERSION} spec), else None
    fingerprint: str

    @property
    def span(self) -> int:
        """The newest span read: ExampleGen's ``span`` property."""
        return self.spans[-1]

    @property
    def pattern(self) -> str:
        """The split pattern the executor reads: one pattern, or ``{p1,p2,...}``."""
        return encode_patterns(self.patterns)

    @property
    def range_config_json(self) -> str:
        """The concrete static RangeConfig JSON: first to last span read."""
        return spans_lib.static_json(self.spans)

    @property
    def spans_text(self) -> str:
        """The ``spans`` custom property: ``"3,4,5"``."""
        return ",".join(str(s) for s in self.spans)

    def exec_properties(self, config: example_gen_pb2.Input) -> dict[str, Any]:
        """ExampleGen's execution properties after resolution (what TFX's driver sets, plus range_config)."""
        resolved = copy.deepcopy(config)
        resolved.splits[0].pattern = self.pattern
        return {
            INPUT_CONFIG_KEY: proto_utils.proto_to_json(resolved),
            RANGE_CONFIG_KEY: self.range_config_json,
            utils.SPAN_PROPERTY_NAME: self.span,
            utils.VERSION_PROPERTY_NAME: self.version,
            utils.FINGERPRINT_PROPERTY_NAME: self.fingerprint,
        }


def resolve(input_base: str, config: example_gen_pb2.Input, selection: spans_lib.SpanSelection) -> Resolution:
    """Resolve ``selection`` against the files under ``input_base``.

    Each chosen span goes through TFX's ``FileBasedInputProcessor`` as a
    single-span static range, exactly as TFX's driver would handle it.

    Raises:
        ValueError: not exactly one input split, no file matches the pattern,
            or no span present falls in the window (the message names the
            folder, the pattern, the selection and the spans present).
    """
    if len(config.splits) != 1:
        raise ValueError(f"a span window needs exactly one input split. Received {len(config.splits)} splits")
    split = config.splits[0]
    where = os.path.join(input_base, split.pattern)
    present = spans_present(input_base, split)
    folders = span_folders(input_base)
    if not present and not folders:
        raise ValueError(
            f"no span found under the data root {input_base}: nothing matches {where} ({_found(input_base)})"
        )
    try:
        chosen = selection.select(sorted(set(present) | set(folders)))
    except ValueError as e:
        raise ValueError(f"{e} (under {where})") from None
    empty = [s for s in chosen if s not in present]
    if empty:
        raise ValueError(
            "; ".join(
                f"span {s}: {folders[s]}/ holds no {_file_glob(split.pattern)} files "
                f"({_found(os.path.join(input_base, folders[s]))})"
                for s in empty
            )
            + f" (data root {input_base}, pattern {split.pattern})"
        )
    patterns, fingerprints, version = [], [], None
    for span in chosen:
        static = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
        processor = input_processor.FileBasedInputProcessor(input_base, [copy.deepcopy(split)], static)
        resolved_span, version = processor.resolve_span_and_version()
        fingerprints.append(processor.get_input_fingerprint(resolved_span, version))
        patterns.append(processor.get_pattern_for_span_version(split.pattern, resolved_span, version))
    fingerprint = fingerprints[0]
    if len(chosen) > 1:
        fingerprint = "; ".join(f"span {s}: {f}" for s, f in zip(chosen, fingerprints, strict=True))
    resolution = Resolution(selection, tuple(chosen), tuple(patterns), version, fingerprint)
    logging.info(
        "span selection %s under %s: spans %s (present: %s)",
        selection,
        input_base,
        spans_lib.format_spans(chosen),
        spans_lib.format_spans(present),
    )
    return resolution


def resolve_exec_properties(exec_properties: dict[str, Any]) -> tuple[example_gen_pb2.Input, Resolution]:
    """The input config and resolution of ExampleGen's (unresolved) execution properties.

    Raises:
        ValueError: a bad ``range_config`` value, or see :func:`resolve`.
    """
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[INPUT_CONFIG_KEY], config)
    selection = spans_lib.from_value(exec_properties.get(RANGE_CONFIG_KEY))
    return config, resolve(exec_properties[INPUT_BASE_KEY], config, selection)


def resolve_range_config_json(input_base: str, range_config_json: str, pattern: str = SPLIT_PATTERN) -> str:
    """A selection (RangeConfig JSON, "" = latest) as the concrete static range of the spans present."""
    resolution = resolve(input_base, input_config(pattern), spans_lib.from_value(range_config_json))
    return resolution.range_config_json


def encode_patterns(patterns: tuple[str, ...] | list[str]) -> str:
    """One pattern as it is; several as ``{p1,p2,...}`` (a single split pattern for the executor).

    Raises:
        ValueError: a pattern holds ``,``, ``{`` or ``}`` and could not be read back.
    """
    if len(patterns) == 1:
        return patterns[0]
    bad = [p for p in patterns if set(p) & set(",{}")]
    if bad:
        raise ValueError(f"cannot list split patterns holding ',', '{{' or '}}': {bad}")
    return "{" + ",".join(patterns) + "}"


def decode_patterns(pattern: str) -> list[str]:
    """Inverse of :func:`encode_patterns`; a plain (or unresolved ``{SPAN}``) pattern is returned alone."""
    if pattern.startswith("{") and pattern.endswith("}") and "," in pattern and not _SPECS.search(pattern):
        return pattern[1:-1].split(",")
    return [pattern]


def is_unresolved(pattern: str) -> bool:
    """True while the pattern still holds a ``{SPAN}``/``{VERSION}``/date spec (no driver ran)."""
    return bool(_SPECS.search(pattern))


class Driver(tfx_driver.FileBasedDriver):
    """TFX's file-based ExampleGen driver, resolving a window of spans instead of one."""

    _resolution: Resolution | None = None

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info: Any, component_info: Any):
        """Overrides TFX's: the window's spans, pattern list, newest span, version and fingerprint."""
        del pipeline_info, component_info
        config, self._resolution = resolve_exec_properties(exec_properties)
        exec_properties.update(self._resolution.exec_properties(config))
        return exec_properties

    def run(self, execution_info: Any) -> Any:
        """TFX's driver output plus the ``spans`` custom property on the Examples artifact."""
        result = super().run(execution_info)
        assert self._resolution is not None
        for artifact in result.output_artifacts[standard_component_specs.EXAMPLES_KEY].artifacts:
            artifact.custom_properties[SPANS_PROPERTY].string_value = self._resolution.spans_text
        return result


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

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        """Resolve the window here when no driver did (open-source KFP), then run TFX's executor."""
        config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[INPUT_CONFIG_KEY], config)
        if any(is_unresolved(split.pattern) for split in config.splits):
            logging.warning("ExampleGen: no driver resolved the spans (preCacheCheck not run); resolving them here")
            config, resolution = resolve_exec_properties(exec_properties)
            exec_properties.update(resolution.exec_properties(config))
            for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
                tfx_driver.update_output_artifact(exec_properties, artifact.mlmd_artifact)
                artifact.set_string_custom_property(SPANS_PROPERTY, resolution.spans_text)
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
        proto_utils.json_to_proto(exec_properties[INPUT_CONFIG_KEY], input_config)
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
        input_base = exec_properties[INPUT_BASE_KEY]
        max_bad = exec_properties.get(MAX_BAD_FRACTION_KEY)
        max_bad = bad_records.DEFAULT_MAX_BAD_FRACTION if max_bad is None else float(max_bad)
        files = input_files(input_base, decode_patterns(input_config.splits[0].pattern))
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
            patterns = decode_patterns(split_pattern)
            if len(patterns) == 1:
                return pipeline | read_one(exec_properties, split_pattern)
            base = exec_properties[INPUT_BASE_KEY]
            logging.info("ExampleGen: reading %d span patterns under %s: %s", len(patterns), base, patterns)
            parts = [pipeline | f"ReadSpan[{i}]" >> read_one(exec_properties, p) for i, p in enumerate(patterns)]
            return parts | "FlattenSpans" >> beam.Flatten()

        return ReadSpans


class SpanWindowExampleGen(import_component.ImportExampleGen):
    """ImportExampleGen whose ``range_config`` may name several spans (see the module docstring)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(self, *, max_bad_fraction: float | None = None, **kwargs: Any):
        """ImportExampleGen's arguments, plus ``max_bad_fraction`` recorded in ``bad_records.json``."""
        super().__init__(**kwargs)
        if max_bad_fraction is not None:
            self.exec_properties[MAX_BAD_FRACTION_KEY] = float(max_bad_fraction)


def examples_spans(artifact: Any) -> list[int]:
    """The spans an Examples artifact holds: its ``spans`` custom property, else its ``span``."""
    if artifact.has_custom_property(SPANS_PROPERTY):
        text = artifact.get_string_custom_property(SPANS_PROPERTY)
        return [int(s) for s in text.split(",") if s.strip()]
    if artifact.has_custom_property(utils.SPAN_PROPERTY_NAME):
        return [int(artifact.get_int_custom_property(utils.SPAN_PROPERTY_NAME))]
    return [int(artifact.span)] if artifact.has_property(utils.SPAN_PROPERTY_NAME) else []
