"""The inputs digest: one sha256 over everything a run would train and gate on.

It covers every selected span's number, version and input fingerprint (as
:func:`shelf_data.window.resolve` resolved them), the code fingerprint
(:func:`pipeline.pipeline.code_fingerprint`) and the config sections that change the model or the gate.
The TFLite pusher records it in the manifest's lineage; ``shelf-audit run`` stops early when a version
in the bucket already carries it (:func:`find_published`). Nothing here runs TFX.

See docs/running.md#re-runs-with-nothing-new for what counts and what does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shelf_data import window

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


def compute(config: Any, resolution: window.Resolution, code_fingerprint: str) -> InputsDigest:
    """The inputs digest of a run of ``config`` over the span window ``resolution``.

    Args:
        config: the run's ``PipelineConfig`` (overrides applied).
        resolution: the run's span window (:func:`shelf_data.window.resolve`).
        code_fingerprint: :func:`pipeline.pipeline.code_fingerprint`.
    """
    spans = tuple(
        SpanInput(span, version, fingerprint)
        for span, version, fingerprint in zip(
            resolution.spans, resolution.versions, resolution.fingerprints, strict=True
        )
    )
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
