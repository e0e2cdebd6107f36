"""The inputs digest: one sha256 over everything a run would train and gate on.

A run's model and verdict depend on (a) the photos of the selected spans,
(b) the model code and data contract (:func:`pipeline.pipeline.code_fingerprint`)
and (c) the config sections that change the model or the gate. The digest
covers exactly these:

* every selected span's number, version and input fingerprint, computed the
  way ImportExampleGen computes them (TFX's ``FileBasedInputProcessor`` with
  the run's split pattern and RangeConfig: file count, bytes and mtimes);
* the code fingerprint;
* the ``data`` (split, span selection), ``training``, ``gate``, ``push``
  (variants, budgets, tolerances) and ``drift`` (it may stop the run)
  sections, without the places things live (``data.input_base``,
  ``push.bucket``, ``push.model_name``) and the Trainer's cache settings
  (``training.cache``, ``cache_memory_limit_mb``, ``cache_dir``); other sections (Kubeflow pod sizes,
  ML Metadata, ``beam_args``, the pipeline name) do not change what is
  trained or whether it is published.

The TFLite pusher records the digest in the manifest's lineage; ``shelf-audit
run`` computes it before building the pipeline and stops early when a version
in the bucket already carries it (:func:`find_published`). Nothing here runs
TFX: it reads file listings and, for :func:`find_published`, manifests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from typing import Any

log = logging.getLogger("shelf_audit.inputs_digest")

# Bump when the digest's recipe changes, so old manifests never match by accident.
RECIPE = 1
# Config keys left out of the digest: where things are and how the Trainer holds its data, not what is trained.
_LOCATION_KEYS = {
    "data": ("input_base",),
    "push": ("bucket", "model_name"),
    "training": ("cache", "cache_memory_limit_mb", "cache_dir"),
}
DIGEST_SECTIONS = ("data", "training", "gate", "push", "drift")


@dataclasses.dataclass(frozen=True)
class SpanInput:
    """One selected span as ImportExampleGen resolves it."""

    span: int
    version: int | None
    input_fingerprint: str


@dataclasses.dataclass(frozen=True)
class InputsDigest:
    """The digest and what went into it."""

    digest: str
    spans: tuple[SpanInput, ...]
    code_fingerprint: str

    @property
    def span_numbers(self) -> list[int]:
        """The selected spans, ascending."""
        return sorted(s.span for s in self.spans)


def _processor(input_base: str, split_name: str, pattern: str, range_config: Any) -> Any:
    from tfx.components.example_gen.input_processor import FileBasedInputProcessor
    from tfx.proto import example_gen_pb2

    split = example_gen_pb2.Input.Split(name=split_name, pattern=pattern)
    return FileBasedInputProcessor(input_base, [split], range_config)


def _resolve_one(input_base: str, split_name: str, pattern: str, range_config: Any) -> SpanInput:
    processor = _processor(input_base, split_name, pattern, range_config)
    span, version = processor.resolve_span_and_version()
    fingerprint = processor.get_input_fingerprint(span, version)
    return SpanInput(int(span), None if version is None else int(version), fingerprint)


def _present_spans(input_base: str, pattern: str) -> list[int]:
    """Span numbers that have at least one file matching ``pattern`` under ``input_base``."""
    from tfx.dsl.io import fileio

    base = input_base.rstrip("/")
    glob = f"{base}/{pattern}".replace("{SPAN}", "*")
    regex = re.compile(
        re.escape(f"{base}/{pattern}").replace(re.escape("{SPAN}"), r"(\d+)").replace(re.escape("*"), r"[^/]*")
    )
    found = set()
    for path in fileio.glob(glob):
        match = regex.fullmatch(path)
        if match:
            found.add(int(match[1]))
    return sorted(found)


def select_spans(input_base: str, range_config: str, pattern: str, split_name: str) -> list[SpanInput]:
    """The spans the run's RangeConfig selects under ``input_base``, each with its input fingerprint.

    ``range_config`` is RangeConfig JSON ("" = the latest span). A single-span
    selection goes through ``FileBasedInputProcessor`` exactly as
    ImportExampleGen's driver does. A window of several spans (a static range
    or a rolling range of more than one span) is resolved against the spans
    present and each span is fingerprinted the same way on its own.

    Raises:
        ValueError: no span matches (TFX's message, naming the split and pattern), or bad RangeConfig JSON.
    """
    from tfx.proto import range_config_pb2
    from tfx.utils import proto_utils

    config = proto_utils.json_to_proto(range_config, range_config_pb2.RangeConfig()) if range_config else None
    if config is None or _single_span(config):
        return [_resolve_one(input_base, split_name, pattern, config)]
    present = _present_spans(input_base, pattern)
    if config.HasField("static_range"):
        lo, hi = config.static_range.start_span_number, config.static_range.end_span_number
        chosen = [s for s in present if lo <= s <= hi]
    else:
        rolling = config.rolling_range
        chosen = [s for s in present if s >= rolling.start_span_number][-rolling.num_spans :]
    if not chosen:
        raise ValueError(
            f"no span under {input_base} matches {pattern} and range_config={range_config}; spans present: {present}"
        )
    return [_resolve_one(input_base, split_name, pattern, _static(range_config_pb2, span)) for span in chosen]


def _single_span(config: Any) -> bool:
    if config.HasField("static_range"):
        return config.static_range.start_span_number == config.static_range.end_span_number
    return config.HasField("rolling_range") and config.rolling_range.num_spans == 1


def _static(range_config_pb2: Any, span: int) -> Any:
    return range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
    )


def digest_config(config: Any) -> dict[str, Any]:
    """The config sections in the digest (a ``PipelineConfig``), as plain data."""
    sections = {}
    for name in DIGEST_SECTIONS:
        section = getattr(config, name, None)
        if section is None:
            continue
        values = dataclasses.asdict(section)
        for key in _LOCATION_KEYS.get(name, ()):
            values.pop(key, None)
        sections[name] = values
    return sections


def compute(
    config: Any, input_base: str, range_config: str, code_fingerprint: str, pattern: str, split_name: str
) -> InputsDigest:
    """The inputs digest of a run of ``config`` over ``input_base`` with span selection ``range_config``.

    Args:
        config: the run's ``PipelineConfig`` (overrides applied).
        input_base: folder holding the spans.
        range_config: RangeConfig JSON, "" for the latest span (``RunInputs.range_config``).
        code_fingerprint: :func:`pipeline.pipeline.code_fingerprint`.
        pattern: ImportExampleGen's split pattern, e.g. ``span-{SPAN}/*.tfrecord*``.
        split_name: ImportExampleGen's input split name (part of TFX's fingerprint string).

    Raises:
        ValueError: no span matches the selection.
    """
    spans = tuple(select_spans(input_base, range_config, pattern, split_name))
    document = {
        "recipe": RECIPE,
        "spans": [dataclasses.asdict(s) for s in spans],
        "code_fingerprint": code_fingerprint,
        "config": digest_config(config),
    }
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return InputsDigest(hashlib.sha256(blob).hexdigest(), spans, code_fingerprint)


def find_published(bucket: str, model_name: str, digest: str) -> tuple[str, dict[str, Any]] | None:
    """``(version, manifest)`` of a published version whose lineage records ``digest``; None if there is none.

    ``LATEST`` is read first (the usual hit), then the other versions, newest first.
    """
    from bucket import layout, versions

    latest = versions.read_latest(bucket, model_name)
    others = [v for v in reversed(versions.list_versions(bucket, model_name)) if v != latest]
    for version in ([latest] if latest else []) + others:
        try:
            manifest = versions.read_manifest(bucket, model_name, version)
        except layout.BucketError as e:
            log.warning("skipping version %s while looking for inputs digest %s: %s", version, digest[:12], e)
            continue
        if (manifest.get("lineage") or {}).get("inputs_digest") == digest:
            return version, manifest
    return None
