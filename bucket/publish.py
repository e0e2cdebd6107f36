"""Writing a model's versions: atomic publish, an interrupted publish finished, rollback, cleanup.

:func:`publish` stages everything under ``.staging/``, checks it, copies it into ``versions/<version>/``
with ``manifest.json`` last (a version folder without it does not exist, :mod:`bucket.versions`), records a
``publish`` event and recomputes ``LATEST`` from the event log (:func:`bucket.history.settle_latest`). A
re-run after a crash records the missing event; :func:`clean` removes leftovers of killed publishes older
than a grace period.

See docs/bucket-contract.md#publishing-staged-verified-then-visible and
docs/bucket-contract.md#concurrent-publishers-rollbacks-and-crashes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import posixpath
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bucket import history, storage, verify, versions
from bucket.layout import (
    GOLDEN_DIR,
    GOLDEN_INDEX,
    HISTORY_DIR,
    LABELS_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    STAGING_DIR,
    TMP_MARK,
    BucketError,
    check_name,
    join,
    model_root,
    version_dir,
)

if TYPE_CHECKING:  # pragma: no cover
    from bucket.signing import Signer

log = logging.getLogger(__name__)


SCHEMA_VERSION = 1
# Leftovers younger than this may belong to a publish still running elsewhere: left alone.
CLEAN_GRACE_SECONDS = 3600
_VERSION_TIME = re.compile(r"^(\d{8}T\d{6}Z)-")
_TMP_TIME = re.compile(re.escape(TMP_MARK) + r"(\d{10,})-")
_STAGING_TIME = re.compile(r"-(\d{10,})-[0-9a-f]+$")


@dataclasses.dataclass(frozen=True)
class PublishResult:
    """Outcome of :func:`publish`: ``created`` is False when deduplicated."""

    version: str
    path: str
    created: bool
    message: str


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _step(name: str) -> None:
    """A named point of :func:`publish` (tests replace this to simulate a crash right after that step)."""


def _finish(bucket: str, model_name: str, version: str, manifest_bytes: bytes) -> tuple[bool, str | None]:
    """Make sure ``version`` (complete) has its publish event, then settle ``LATEST``.

    Returns ``(repaired, latest)``: ``repaired`` is True when the event was missing (a crash between
    manifest.json and the event) and was recorded now, with the manifest's creation time.
    """
    root = model_root(bucket, model_name)
    repaired = False
    if history.publish_event(history.read_history(bucket, model_name), version) is None:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        try:
            moment = datetime.datetime.fromisoformat(manifest["created"])
        except (KeyError, TypeError, ValueError):
            moment = _utc_now()
        history.record_event(
            root,
            "publish",
            version,
            moment,
            fingerprint=manifest.get("fingerprint"),
            manifest_sha256=storage.sha256(manifest_bytes),
            repaired=True,
        )
        repaired = True
        log.warning("%s: version %s had no publish event (an interrupted publish): recorded now", root, version)
    return repaired, history.settle_latest(bucket, model_name)


def finish_interrupted(bucket: str, model_name: str, version: str) -> str:
    """For an already-complete ``version``: record a missing publish event and settle ``LATEST``; a message.

    A rollback recorded since the version was created keeps ``LATEST`` where it put it.
    """
    _, manifest_bytes = versions.read_manifest_bytes(bucket, model_name, version)
    repaired, latest = _finish(bucket, model_name, version, manifest_bytes)
    if repaired:
        return f"finished the interrupted publish of {version}: publish event recorded, LATEST is {latest}"
    return f"{version} is already published (LATEST is {latest}); nothing written"


def _age(name: str, path: str, now: float) -> float | None:
    """Seconds since ``name`` was made: from the time in its name, else its mtime; None if unknown."""
    for pattern in (_TMP_TIME, _STAGING_TIME):
        match = pattern.search(name)
        if match:
            return now - int(match.group(1))
    match = _VERSION_TIME.match(name)
    if match:
        made = datetime.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        named = now - made.timestamp()
        modified = storage.mtime(path)
        return min(named, now - modified) if modified else named
    modified = storage.mtime(path)
    return None if modified is None else now - modified


def clean(bucket: str, model_name: str, grace_seconds: float = CLEAN_GRACE_SECONDS) -> list[str]:
    """Remove leftovers of killed publishes older than ``grace_seconds``; return what was removed.

    Leftovers: ``.staging/*`` folders, ``*.tmp-*`` objects (``LATEST``, history
    events, manifests) and version folders without ``manifest.json``. Younger
    ones may belong to a publish running right now elsewhere and are kept.
    """
    root = model_root(bucket, model_name)
    now = time.time()
    candidates: list[tuple[str, str]] = []
    staging = join(root, STAGING_DIR)
    if storage.isdir(staging):
        candidates += [(name, join(staging, name)) for name in storage.listdir(staging)]
    if storage.isdir(root):
        candidates += [(name, join(root, name)) for name in storage.listdir(root) if TMP_MARK in name]
    history_dir = join(root, HISTORY_DIR)
    if storage.isdir(history_dir):
        candidates += [(name, join(history_dir, name)) for name in storage.listdir(history_dir) if TMP_MARK in name]
    for version in versions.version_folders(bucket, model_name):
        folder = version_dir(bucket, model_name, version)
        if not storage.exists(join(folder, MANIFEST_FILE)):
            candidates.append((version, folder))
        elif storage.isdir(folder):
            candidates += [(name, join(folder, name)) for name in storage.listdir(folder) if TMP_MARK in name]
    removed = []
    for name, path in candidates:
        age = _age(name, path, now)
        if age is not None and age >= grace_seconds:
            storage.remove_quietly(path)
            if not storage.exists(path):
                removed.append(path)
    if removed:
        log.info("removed %d leftover(s) of interrupted publishes under %s", len(removed), root)
    return removed


def build_manifest(
    *,
    model_name: str,
    default_variant: str,
    variants: Mapping[str, Mapping[str, Any]],
    labels: Sequence[str],
    gate_metrics: Mapping[str, Any],
    lineage: Mapping[str, Any],
    image_shape: Sequence[int],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The caller's part of ``manifest.json``.

    :func:`publish` adds ``schema_version``, ``version``, ``created``,
    ``fingerprint`` and ``files`` (name -> bytes and sha256).

    Args:
        model_name: bucket folder name.
        default_variant: the variant copied to ``model.tflite``.
        variants: per variant: ``file`` (None when rejected), ``quantization``,
            ``bytes``, ``sha256``, ``io`` (input/output shape, dtype, scale),
            ``latency_ms``, ``agreement``, ``recall``, ``passed``, ``reasons``...
        labels: class names in output order.
        gate_metrics: the Evaluator's metrics (overall and per class).
        lineage: pipeline, run id, ML Metadata ids, spans, source revision.
        image_shape: ``(height, width, channels)`` of one model input, as the Trainer exported it.
        extra: anything else to record.

    Raises:
        ValueError: the default variant is missing or has no file.
    """
    if default_variant not in variants or not variants[default_variant].get("file"):
        raise ValueError(f"default_variant {default_variant!r} must be a published variant. Received {list(variants)}")
    manifest: dict[str, Any] = {
        "model_name": model_name,
        "model_file": MODEL_FILE,
        "default_variant": default_variant,
        "labels": list(labels),
        "labels_file": LABELS_FILE,
        "input": {
            "shape": [1, *(int(d) for d in image_shape)],
            "range": [0, 255],
            "layout": "NHWC grayscale, pixels after resizing the camera frame (see preprocessing); "
            "normalisation is in the model",
        },
        "output": {"shape": [1, len(labels)], "meaning": "class probabilities in label order"},
        "variants": {name: dict(entry) for name, entry in variants.items()},
        "gate_metrics": dict(gate_metrics),
        "lineage": dict(lineage),
        "tflite_metadata": "embedded in the tasks variant only (labels, normalisation, image properties, for "
        "MediaPipe Tasks); the gray variants carry none: read labels.txt and this manifest",
    }
    manifest.update(extra or {})
    return manifest


def build_golden(
    images: Any,
    labels: Sequence[int],
    reference: Any,
    expected: Mapping[str, Any],
    tolerances: Mapping[str, float],
    label_names: Sequence[str],
) -> dict[str, bytes]:
    """The ``golden/`` files an on-device contract test replays.

    ``input_XXX.u8`` holds the raw pixels of one sample (``H*W*C`` uint8,
    row-major: exactly what the app feeds), and ``golden.json`` the shape,
    labels, the SavedModel's outputs and, per model file, the expected
    outputs with the tolerance to compare them with.

    Args:
        images: uint8 ``[N, H, W, C]``.
        labels: true class of each sample.
        reference: SavedModel probabilities ``[N, classes]``.
        expected: model file name -> its probabilities ``[N, classes]``.
        tolerances: model file name -> max abs difference allowed on replay.
        label_names: class names in output order.

    Returns:
        name (relative to ``golden/``) -> bytes.
    """
    import numpy as np

    images = np.asarray(images, dtype=np.uint8)
    files: dict[str, bytes] = {}
    samples = []
    for i, image in enumerate(images):
        name = f"input_{i:03d}.u8"
        files[name] = image.tobytes()
        samples.append(
            {
                "file": name,
                "label": int(labels[i]),
                "label_name": label_names[int(labels[i])],
                "savedmodel": [round(float(v), 7) for v in reference[i]],
                "expected": {f: [round(float(v), 7) for v in out[i]] for f, out in expected.items()},
            }
        )
    files[GOLDEN_INDEX] = storage.json_bytes(
        {
            "shape": list(images.shape[1:]),
            "dtype": "uint8",
            "labels": list(label_names),
            "samples": samples,
            "tolerance": {name: float(t) for name, t in tolerances.items()},
        }
    )
    return files


def publish(
    bucket: str,
    model_name: str,
    files: Mapping[str, bytes],
    manifest: Mapping[str, Any],
    golden: Mapping[str, bytes] | None = None,
    fingerprint: str | None = None,
    now: datetime.datetime | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    signer: Signer | None = None,
) -> PublishResult:
    """Publish one version atomically, record its event and settle ``LATEST``.

    Args:
        bucket: ``/local/path``, ``gs://bucket/prefix``, ``s3://bucket/prefix`` or ``memory://...``.
        model_name: folder under the bucket.
        files: name -> bytes; must hold ``model.tflite``.
        manifest: from :func:`build_manifest` (extra keys are kept).
        golden: name -> bytes, written under ``golden/``.
        fingerprint: identity of the model for deduplication (sha256 of the
            SavedModel content); default: sha256 of ``model.tflite``.
        now: creation time (tests).
        extra_files: more files for the version (e.g. ``{"report.html": ...}``),
            listed with their sha256 in the manifest like the others.
        signer: signs the manifest's bytes (:mod:`bucket.signing`); None: unsigned.

    Returns:
        A :class:`PublishResult`. If a complete version with the same
        fingerprint exists, nothing is written and ``created`` is False, except
        that a missing publish event (a crash after ``manifest.json``) is
        recorded and ``LATEST`` settled (:func:`finish_interrupted`).

    Raises:
        ValueError: bad names or ``model.tflite`` missing.
        BucketError: a checksum did not match after writing.
    """
    if MODEL_FILE not in files:
        raise ValueError(f"files must contain {MODEL_FILE!r}. Received {sorted(files)}")
    all_files: dict[str, bytes] = dict(files)
    for name, data in (golden or {}).items():
        all_files[f"{GOLDEN_DIR}/{name}"] = data
    for name, data in (extra_files or {}).items():
        if name in all_files:
            raise ValueError(f"extra file {name!r} clashes with a model file")
        all_files[name] = data
    for name in all_files:
        check_name(name)
    fingerprint = fingerprint or storage.sha256(files[MODEL_FILE])
    root = model_root(bucket, model_name)

    try:
        clean(bucket, model_name)
    except Exception as error:  # noqa: BLE001 - cleanup is best effort: never blocks a publish
        log.warning("cleanup of %s failed: %s", root, error)

    existing = versions.find_version_by_fingerprint(bucket, model_name, fingerprint)
    if existing is not None:
        message = finish_interrupted(bucket, model_name, existing)
        if "already published" in message:
            message = f"model {fingerprint[:12]} is already published as {existing}; nothing written"
        log.info(message)
        return PublishResult(existing, version_dir(bucket, model_name, existing), False, message)

    now = now or _utc_now()
    version = versions.make_version(fingerprint, now)
    full_manifest = dict(manifest)
    full_manifest.update(
        schema_version=SCHEMA_VERSION,
        model_name=model_name,
        version=version,
        created=now.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        fingerprint=fingerprint,
        files={name: {"bytes": len(data), "sha256": storage.sha256(data)} for name, data in sorted(all_files.items())},
    )
    signature = None
    if signer is not None:
        full_manifest["signing"] = signer.manifest_block()
    manifest_bytes = storage.json_bytes(full_manifest)
    if signer is not None:
        signature = signer.sign(manifest_bytes)

    staging = join(root, STAGING_DIR, f"{version}-{int(time.time())}-{secrets.token_hex(3)}")
    target = version_dir(bucket, model_name, version)
    previous = versions.read_latest(bucket, model_name)
    try:
        # 1. Stage and check what landed.
        for name, data in all_files.items():
            storage.makedirs(posixpath.dirname(join(staging, name)))
            storage.write(join(staging, name), data)
        storage.write(join(staging, MANIFEST_FILE), manifest_bytes)
        _check_files(staging, full_manifest["files"])
        _step("staged")

        # 2. Make visible: files first, then the signature, manifest.json last (the commit point). Each is
        # created only if absent: a second writer of the same version fails instead of overwriting.
        if storage.exists(target):
            # Leftover of a crashed publish of this very version (no manifest).
            storage.remove(target)
        for name in sorted(all_files):
            storage.makedirs(posixpath.dirname(join(target, name)))
            storage.create(join(target, name), all_files[name])
        _check_files(target, full_manifest["files"])
        if signature is not None:
            storage.create(join(target, SIGNATURE_FILE), signature)
        _step("copied")
        storage.create(join(target, MANIFEST_FILE), manifest_bytes)
    except Exception:
        if not storage.exists(join(target, MANIFEST_FILE)):
            storage.remove_quietly(target)
        storage.remove_quietly(staging)
        raise
    _step("manifest")

    # 3. The event, then LATEST from the log: a complete, checked version only.
    history.record_event(
        root,
        "publish",
        version,
        _utc_now(),
        previous=previous,
        fingerprint=fingerprint,
        manifest_sha256=storage.sha256(manifest_bytes),
    )
    _step("event")
    latest = history.settle_latest(bucket, model_name)
    _step("latest")
    storage.remove_quietly(staging)
    signed = f"signed, key {full_manifest['signing']['public_key_fingerprint']}" if signer is not None else "unsigned"
    if latest == version:
        message = f"published {version} to {target} (LATEST was {previous}; {signed})"
    else:
        message = f"published {version} to {target} ({signed}); LATEST stays {latest} (newer, or rolled back to)"
    log.info(message)
    return PublishResult(version, target, True, message)


def _check_files(folder: str, expected: Mapping[str, Mapping[str, Any]]) -> None:
    for name, entry in expected.items():
        data = storage.read(join(folder, name))
        if len(data) != entry["bytes"] or storage.sha256(data) != entry["sha256"]:
            raise BucketError(f"checksum mismatch for {join(folder, name)}")


def rollback(bucket: str, model_name: str, version: str, reason: str = "") -> str | None:
    """Point ``LATEST`` at an existing complete version: record a rollback event, then settle ``LATEST``.

    Args:
        bucket: the bucket.
        model_name: folder under the bucket.
        version: the version to make current (its checksums are checked first).
        reason: free text for the event.

    Returns:
        The version ``LATEST`` named before.

    Raises:
        BucketError: the version does not exist, is incomplete or corrupt.
    """
    if not versions.is_complete(bucket, model_name, version):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    result = verify.verify_version(bucket, model_name, version, run_models=False)
    if not result.ok:
        raise BucketError(f"version {version} is corrupt: {'; '.join(result.problems)}")
    previous = versions.read_latest(bucket, model_name)
    history.record_event(
        model_root(bucket, model_name), "rollback", version, _utc_now(), previous=previous, reason=reason
    )
    latest = history.settle_latest(bucket, model_name)
    log.info("LATEST of %s: %s -> %s", model_name, previous, latest)
    return previous
