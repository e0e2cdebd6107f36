"""The model live at ``LATEST``: the file a candidate variant is compared with, checked against its manifest.

:func:`find_live_model` prefers the live version's file of the candidate's
variant, else its default ``model.tflite``, and checks the bytes against every
sha256 the live manifest records. A live model whose bytes differ from its own
manifest is an error (:class:`LiveModelError`), not a reason to skip: the
bucket was changed after publishing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bucket import storage, versions
from bucket.layout import LATEST_FILE, MODEL_FILE, BucketError, check_name, join, model_root, version_dir

log = logging.getLogger(__name__)


FIRST_RELEASE = "no live model: first release"


class LiveModelError(BucketError):
    """The live model in the bucket differs from what its manifest records (changed after publishing)."""


@dataclasses.dataclass(frozen=True)
class LiveModel:
    """The TFLite model live at ``LATEST`` that a candidate variant is compared with.

    Attributes:
        version: the live version (what ``LATEST`` names).
        file: the file read inside the version (``model_<variant>.tflite`` or ``model.tflite``).
        variant: the variant that file holds (for ``model.tflite``: the live
            manifest's ``default_variant``; None when the manifest does not say).
        requested_variant: the candidate variant this live model was looked up for.
        data: the model bytes (not in the repr).
        sha256: hex sha256 of ``data``.
        checksum_verified: the manifest recorded a sha256 for the file and it matched
            (False: an old manifest without checksums; nothing was checked).
        labels: the live manifest's class names, in output order (None when it does not say).
        path: full path of the file in the bucket.
    """

    version: str
    file: str
    variant: str | None
    requested_variant: str
    data: bytes = dataclasses.field(repr=False, compare=False)
    sha256: str
    checksum_verified: bool
    labels: tuple[str, ...] | None
    path: str

    @property
    def same_variant(self) -> bool:
        """The live file holds the candidate's own variant (a like-for-like comparison)."""
        return self.variant == self.requested_variant

    def describe(self) -> str:
        """``<version>/<file> (<variant>, same variant | default model, ...)``."""
        if self.same_variant:
            kind = "same variant"
        else:
            kind = f"live default model: no published {self.requested_variant} in that version"
        return f"{self.version}/{self.file} ({self.variant or 'variant unknown'}, {kind})"


def _recorded(manifest: Mapping[str, Any], file: str, variant: str | None) -> list[tuple[str, str, int | None]]:
    """What the manifest records for ``file``: ``(where, sha256, bytes or None)`` from ``files`` and its variant."""
    recorded = []
    files = manifest.get("files")
    record = files.get(file) if isinstance(files, Mapping) else None
    if isinstance(record, Mapping) and record.get("sha256"):
        size = record.get("bytes")
        recorded.append((f"files[{file!r}]", str(record["sha256"]), size if isinstance(size, int) else None))
    variants = manifest.get("variants")
    entry = variants.get(variant) if isinstance(variants, Mapping) and variant else None
    if isinstance(entry, Mapping) and entry.get("file") == file and entry.get("sha256"):
        size = entry.get("bytes")
        recorded.append((f"variants[{variant!r}]", str(entry["sha256"]), size if isinstance(size, int) else None))
    return recorded


def _checksum_problems(recorded: Sequence[tuple[str, str, int | None]], data: bytes, digest: str) -> list[str]:
    """Each way ``data`` differs from what the manifest records (empty: it matches)."""
    problems = []
    for where, sha, size in recorded:
        if sha != digest:
            problems.append(f"sha256 {digest[:12]}... but the manifest's {where} records {sha[:12]}...")
        if size is not None and size != len(data):
            problems.append(f"{len(data)} bytes but the manifest's {where} records {size}")
    return problems


def _pick_file(manifest: Mapping[str, Any], variant: str) -> tuple[str, str | None, str]:
    """``(file, variant it holds, why)``: the live file of ``variant`` when published, else the default model."""
    variants = manifest.get("variants")
    entry = variants.get(variant) if isinstance(variants, Mapping) else None
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    if isinstance(entry, Mapping) and entry.get("file") and entry.get("published", True) is not False:
        return str(entry["file"]), variant, "same variant"
    if isinstance(entry, Mapping):
        why = f"the live version did not publish {variant} (rejected there)"
    else:
        why = f"the live version has no {variant} variant"
    default = manifest.get("default_variant")
    file = manifest.get("model_file") or MODEL_FILE
    return str(file), str(default) if default else None, why


def find_live_model(bucket: str, model_name: str, variant: str) -> tuple[LiveModel | None, str]:
    """The TFLite model live at ``LATEST`` to compare the candidate ``variant`` with.

    Prefers the live version's file of the same variant (its manifest's
    ``variants[variant]["file"]``, i.e. ``model_<variant>.tflite``, when it was
    published there), else the live version's default ``model.tflite`` (the
    returned :class:`LiveModel` says which, and which variant that file holds).
    The file's bytes are checked against every sha256 (and size) the live
    manifest records for it (``files`` and the variant entry).

    Args:
        bucket: the model bucket (local path, ``gs://``, ``s3://`` or ``memory://``).
        model_name: folder under the bucket.
        variant: the candidate variant (``fp16``, ``int8``...).

    Returns:
        ``(live model, message)``; ``(None, reason)`` when there is nothing to
        compare with: no ``LATEST`` (the reason starts with
        :data:`FIRST_RELEASE`), a live version whose manifest is missing or not
        valid JSON, a manifest naming an invalid file, or a file neither
        recorded in the manifest nor present.

    Raises:
        ValueError: bad ``bucket`` or ``model_name``.
        LiveModelError: the live file differs from its manifest (sha256 or
            size), or the manifest records it and it is missing; the message
            names the path.
        OSError: the bucket cannot be read (not a reason to skip the gate).
    """
    root = model_root(bucket, model_name)
    version = versions.read_latest(bucket, model_name)
    if version is None:
        return None, f"{FIRST_RELEASE} (no {LATEST_FILE} under {root})"
    try:
        manifest = versions.read_manifest(bucket, model_name, version)
    except (BucketError, ValueError) as error:
        latest = LATEST_FILE
        return None, f"no live model: {latest} names {version!r} but its manifest is unusable: {error}"

    file, file_variant, why = _pick_file(manifest, variant)
    try:
        check_name(file)
    except ValueError as error:
        return None, f"no live model: the manifest of live version {version} names an invalid model file ({error})"
    path = join(version_dir(bucket, model_name, version), file)
    recorded = _recorded(manifest, file, file_variant)
    if not storage.exists(path):
        if recorded:
            raise LiveModelError(
                f"live model {path} is missing, but the manifest of live version {version} records it "
                f"(sha256 {recorded[0][1][:12]}...): the bucket was changed after publishing"
            )
        return None, f"no live model: {path} does not exist (live version {version})"
    data = storage.read(path)
    digest = storage.sha256(data)
    problems = _checksum_problems(recorded, data, digest)
    if problems:
        raise LiveModelError(
            f"live model {path} differs from the manifest of live version {version}: "
            + "; ".join(problems)
            + f" (the bucket was changed after publishing; check it with `shelf-audit models verify {version}`)"
        )
    labels = manifest.get("labels")
    model = LiveModel(
        version=version,
        file=file,
        variant=file_variant,
        requested_variant=variant,
        data=data,
        sha256=digest,
        checksum_verified=bool(recorded),
        labels=tuple(str(label) for label in labels) if isinstance(labels, (list, tuple)) else None,
        path=path,
    )
    if not recorded:
        log.warning("live model %s: its manifest records no sha256 for it; bytes not checked", path)
    message = f"live model {model.describe()}"
    if not model.same_variant:
        message += f": {why}"
    return model, message
