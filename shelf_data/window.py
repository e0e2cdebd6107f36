"""The span window a run reads: its selection resolved against the files under ``input_base``.

The one resolver of the project: ExampleGen's driver and executor, SpanDrift,
the inputs digest and ``shelf-audit run`` all call :func:`resolve`, and a run
resolves once and passes the :class:`Resolution` on. Each chosen span is
matched, versioned and fingerprinted by TFX's own ExampleGen code (the glob
and regex its driver builds from ``{SPAN}``/``{VERSION}``, and its input
fingerprint), so what is resolved here is what ImportExampleGen would read.
That code is loaded on its own (:func:`_tfx`): no Beam, no TFX component.
A window of several spans is written into the split pattern as
``{span-3/*.tfrecord*,span-4/*.tfrecord*}`` (:func:`encode_patterns`); the
Examples artifact's ``spans`` custom property lists every span read.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

from absl import logging
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2

from shelf_data import spans as spans_lib

# The one input split of the photos, written here only: the DAG, the driver, drift and the inputs digest use it.
SPLIT_NAME = "single_split"
SPLIT_PATTERN = "span-{SPAN}/*.tfrecord*"
# Custom property of the Examples artifact: every span read, e.g. "3,4,5" (TFX's own: "span").
SPANS_PROPERTY = "spans"
SPAN_PROPERTY = "span"
# TFX's pattern specs: {SPAN}, {SPAN:width}, {VERSION}, {VERSION:width}, {YYYY}, {MM}, {DD}.
_SPECS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}|\{(YYYY|MM|DD)\}")
_TFX_UTILS = "tfx.components.example_gen.utils"


@functools.cache
def _tfx() -> ModuleType:
    """TFX's ExampleGen utils (span and version matching, input fingerprints), pinned TFX 1.16.

    ``import tfx.components.example_gen.utils`` first runs ``tfx/components/__init__.py``, which
    imports every TFX component and Apache Beam (about 7 s); the module itself needs only TFX's file
    I/O and protos, so it is loaded from its file unless the process has imported it already.
    """
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    if _TFX_UTILS in sys.modules:
        return sys.modules[_TFX_UTILS]
    import tfx

    path = os.path.join(os.path.dirname(tfx.__file__), "components", "example_gen", "utils.py")
    spec = importlib.util.spec_from_file_location("shelf_data._tfx_example_gen_utils", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def input_config(pattern: str = SPLIT_PATTERN) -> example_gen_pb2.Input:
    """The one input split of the photos: :data:`SPLIT_PATTERN` under ``input_base``."""
    return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=pattern)])


def spans_present(input_base: str, split: example_gen_pb2.Input.Split) -> list[int]:
    """Every span with at least one file matching ``split``'s pattern under ``input_base``, ascending.

    Uses TFX's own span matching (the glob and regex its driver builds from ``{SPAN}``).

    Raises:
        ValueError: the pattern has no ``{SPAN}`` (or date) spec.
    """
    utils = _tfx()
    is_span, is_date, is_version = utils.verify_split_pattern_specs(split)
    if not (is_span or is_date):
        raise ValueError(f"split pattern {split.pattern!r} has no {utils.SPAN_SPEC}: it cannot select spans")
    # compatibility shim: docs/design-decisions.md#compatibility-shims
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
    """The file part of a split pattern, after its last ``/`` (``*.tfrecord*`` of :data:`SPLIT_PATTERN`)."""
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
    """The spans a run reads, each with the version and input fingerprint ImportExampleGen records."""

    selection: spans_lib.SpanSelection
    spans: tuple[int, ...]  # ascending
    patterns: tuple[str, ...]  # one resolved split pattern per span, relative to input_base
    versions: tuple[int | None, ...]  # per span ({VERSION} spec), else None
    fingerprints: tuple[str, ...]  # per span: TFX's input fingerprint (file count, bytes, mtimes)

    @property
    def span(self) -> int:
        """The newest span read: ExampleGen's ``span`` property."""
        return self.spans[-1]

    @property
    def version(self) -> int | None:
        """The newest span's version: ExampleGen's ``version`` property."""
        return self.versions[-1]

    @property
    def fingerprint(self) -> str:
        """ExampleGen's ``input_fingerprint``: the span's own, or ``span 3: ...; span 4: ...`` for a window."""
        if len(self.spans) == 1:
            return self.fingerprints[0]
        return "; ".join(f"span {s}: {f}" for s, f in zip(self.spans, self.fingerprints, strict=True))

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
    utils = _tfx()
    is_span, is_date, is_version = utils.verify_split_pattern_specs(split)
    patterns, versions, fingerprints = [], [], []
    for span in chosen:  # each span on its own, exactly as TFX's driver resolves a one-span static range
        static = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
        # TFX fills in the split's pattern as it resolves: it gets a copy, as its input processor gives it.
        fingerprint, _, version = utils.calculate_splits_fingerprint_span_and_version(
            input_base, [copy.deepcopy(split)], static
        )
        fingerprints.append(fingerprint)
        versions.append(version)
        patterns.append(utils.get_pattern_for_span_version(split.pattern, is_span, is_date, is_version, span, version))
    resolution = Resolution(selection, tuple(chosen), tuple(patterns), tuple(versions), tuple(fingerprints))
    logging.info(
        "span selection %s under %s: spans %s (present: %s)",
        selection,
        input_base,
        spans_lib.format_spans(chosen),
        spans_lib.format_spans(present),
    )
    return resolution


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
    if artifact.has_custom_property(SPAN_PROPERTY):
        return [int(artifact.get_int_custom_property(SPAN_PROPERTY))]
    return [int(artifact.span)] if artifact.has_property(SPAN_PROPERTY) else []
