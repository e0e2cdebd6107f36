"""The span window a run reads: its selection resolved against the files under ``input_base``.

The run's selection (:mod:`shelf_data.spans`) is resolved to the spans present
under ``input_base``; each chosen span then goes through TFX's own
``FileBasedInputProcessor`` as a single-span ``static_range`` (pattern,
``{VERSION}``, fingerprint: TFX's code). A window of several spans is written
into the split pattern as ``{span-3/*.tfrecord*,span-4/*.tfrecord*}``
(:func:`encode_patterns`); the Examples artifact's ``spans`` custom property
lists every span read (:func:`examples_spans`). The drivers and the executor
(:mod:`components.example_gen.driver`, :mod:`components.example_gen.executor`)
share this resolution.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from typing import Any

from absl import logging
from tfx.components.example_gen import input_processor, utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from shelf_data import spans as spans_lib

# The one input split of the photos, written here only: the DAG, the driver, drift and the inputs digest use it.
SPLIT_NAME = "single_split"
SPLIT_PATTERN = "span-{SPAN}/*.tfrecord*"
# Custom property of the Examples artifact: every span read, e.g. "3,4,5".
SPANS_PROPERTY = "spans"
INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
RANGE_CONFIG_KEY = standard_component_specs.RANGE_CONFIG_KEY
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
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


def examples_spans(artifact: Any) -> list[int]:
    """The spans an Examples artifact holds: its ``spans`` custom property, else its ``span``."""
    if artifact.has_custom_property(SPANS_PROPERTY):
        text = artifact.get_string_custom_property(SPANS_PROPERTY)
        return [int(s) for s in text.split(",") if s.strip()]
    if artifact.has_custom_property(utils.SPAN_PROPERTY_NAME):
        return [int(artifact.get_int_custom_property(utils.SPAN_PROPERTY_NAME))]
    return [int(artifact.span)] if artifact.has_property(utils.SPAN_PROPERTY_NAME) else []
