"""The model bucket: layout, atomic publish, manifest, LATEST and history.

Layout (the bucket contract in the README)::

    <bucket>/<model_name>/
      versions/<version>/
        model.tflite, model_<variant>.tflite, labels.txt, golden/..., manifest.json
      LATEST          names the current version; written last
      history.jsonl   one JSON line per publish or rollback
      .staging/       work area of publishes in flight (never read by apps)

How a reader never sees a half-written version, on any filesystem:

1. Everything is written to ``.staging/<version>-<random>/`` and re-read to
   check the checksums.
2. The files are copied into ``versions/<version>/`` with ``manifest.json``
   last (written under a temporary name, then renamed). **A version folder
   without ``manifest.json`` does not exist** for :func:`list_versions`,
   :func:`read_manifest` and the app. We do not rename the folder itself:
   on ``gs://`` a folder rename is a non-atomic copy and delete of every
   object, while a single object appears atomically.
3. The copied files are checked against the manifest's checksums, then
   ``LATEST`` moves (temporary object + rename) and the history line is added.

All I/O goes through ``tf.io.gfile`` so ``gs://`` (and ``ram://`` in tests)
work like a local folder. ``history.jsonl`` is rewritten whole (object
stores cannot append); concurrent publishers of one model are not supported,
which a pipeline with one Pusher never has.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import posixpath
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
GOLDEN_DIR = "golden"
GOLDEN_INDEX = "golden.json"
LATEST_FILE = "LATEST"
HISTORY_FILE = "history.jsonl"
VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"

gfile = tf.io.gfile


class BucketError(RuntimeError):
    """The bucket is not in the state the caller expects."""


@dataclasses.dataclass(frozen=True)
class PublishResult:
    """Outcome of :func:`publish`: ``created`` is False when deduplicated."""

    version: str
    path: str
    created: bool
    message: str


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_version`; ``problems`` empty means ok."""

    version: str
    checked: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _join(*parts: str) -> str:
    # posixpath keeps '/' for gs:// and ram:// on every OS; strip stray slashes.
    return posixpath.join(parts[0].rstrip("/"), *parts[1:])


def model_root(bucket: str, model_name: str) -> str:
    """``<bucket>/<model_name>``."""
    if not bucket:
        raise ValueError("bucket is empty")
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain folder name. Received model_name={model_name!r}")
    return _join(bucket, model_name)


def version_dir(bucket: str, model_name: str, version: str) -> str:
    """``<bucket>/<model_name>/versions/<version>``."""
    return _join(model_root(bucket, model_name), VERSIONS_DIR, version)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version(fingerprint: str, now: datetime.datetime | None = None) -> str:
    """``20261125T120102Z-<6 hex>``: sorts by time, unique per model pushed."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{fingerprint[:6]}"


def _utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _read(path: str) -> bytes:
    with gfile.GFile(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with gfile.GFile(path, "wb") as f:
        f.write(data)


def _atomic_write(path: str, data: bytes) -> None:
    """Write a temporary sibling, then rename over ``path`` (one object appears whole)."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    _write(tmp, data)
    try:
        gfile.rename(tmp, path, overwrite=True)
    except Exception:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    try:
        if gfile.isdir(path):
            gfile.rmtree(path)
        elif gfile.exists(path):
            gfile.remove(path)
    except Exception as error:  # cleanup must not hide the original error
        log.warning("could not remove %s: %s", path, error)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or name == MANIFEST_FILE:
        raise ValueError(f"invalid file name for a version: {name!r}")


def read_latest(bucket: str, model_name: str) -> str | None:
    """The version ``LATEST`` names, or None before the first publish."""
    path = _join(model_root(bucket, model_name), LATEST_FILE)
    if not gfile.exists(path):
        return None
    return _read(path).decode("utf-8").strip() or None


def is_complete(bucket: str, model_name: str, version: str) -> bool:
    """A version exists only once its ``manifest.json`` is in place."""
    return gfile.exists(_join(version_dir(bucket, model_name, version), MANIFEST_FILE))


def list_versions(bucket: str, model_name: str) -> list[str]:
    """Complete versions, oldest first (version names sort by time)."""
    root = _join(model_root(bucket, model_name), VERSIONS_DIR)
    if not gfile.isdir(root):
        return []
    names = sorted(name.rstrip("/") for name in gfile.listdir(root))
    return [name for name in names if is_complete(bucket, model_name, name)]


def read_manifest(bucket: str, model_name: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the one ``LATEST`` names).

    Raises:
        BucketError: no such complete version, or nothing published yet.
    """
    version = version or read_latest(bucket, model_name)
    if version is None:
        raise BucketError(f"nothing published under {model_root(bucket, model_name)}")
    path = _join(version_dir(bucket, model_name, version), MANIFEST_FILE)
    if not gfile.exists(path):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    return json.loads(_read(path).decode("utf-8"))


def find_version_by_fingerprint(bucket: str, model_name: str, fingerprint: str) -> str | None:
    """Newest complete version whose manifest records ``fingerprint``."""
    for version in reversed(list_versions(bucket, model_name)):
        # The fingerprint prefix is in the name: only open candidate manifests.
        if not version.endswith(f"-{fingerprint[:6]}"):
            continue
        if read_manifest(bucket, model_name, version).get("fingerprint") == fingerprint:
            return version
    return None


def read_history(bucket: str, model_name: str) -> list[dict[str, Any]]:
    """Every history entry, oldest first."""
    path = _join(model_root(bucket, model_name), HISTORY_FILE)
    if not gfile.exists(path):
        return []
    return [json.loads(line) for line in _read(path).decode("utf-8").splitlines() if line.strip()]


def _append_history(bucket: str, model_name: str, entry: Mapping[str, Any]) -> None:
    # Object stores cannot append: read, add one line, replace atomically.
    path = _join(model_root(bucket, model_name), HISTORY_FILE)
    existing = _read(path) if gfile.exists(path) else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    line = json.dumps(dict(entry), sort_keys=True).encode("utf-8") + b"\n"
    _atomic_write(path, existing + line)


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
            "layout": "NHWC grayscale, pixels after resizing the camera frame; normalisation is in the model",
        },
        "output": {"shape": [1, len(labels)], "meaning": "class probabilities in label order"},
        "variants": {name: dict(entry) for name, entry in variants.items()},
        "gate_metrics": dict(gate_metrics),
        "lineage": dict(lineage),
        "tflite_metadata": "none embedded: read labels.txt and this manifest",
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
    files[GOLDEN_INDEX] = _json_bytes(
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
) -> PublishResult:
    """Publish one version atomically and move ``LATEST`` to it.

    Args:
        bucket: ``/local/path``, ``gs://bucket/prefix`` or ``ram://...``.
        model_name: folder under the bucket.
        files: name -> bytes; must hold ``model.tflite``.
        manifest: from :func:`build_manifest`.
        golden: name -> bytes, written under ``golden/``.
        fingerprint: identity of the model for deduplication (sha256 of the
            SavedModel content); default: sha256 of ``model.tflite``.
        now: creation time (tests).

    Returns:
        A :class:`PublishResult`. If a version with the same fingerprint
        exists, nothing is written and ``created`` is False.

    Raises:
        ValueError: bad file names or ``model.tflite`` missing.
        BucketError: a checksum did not match after writing.
    """
    if MODEL_FILE not in files:
        raise ValueError(f"files must contain {MODEL_FILE!r}. Received {sorted(files)}")
    all_files: dict[str, bytes] = dict(files)
    for name, data in (golden or {}).items():
        all_files[f"{GOLDEN_DIR}/{name}"] = data
    for name in all_files:
        _check_name(name)
    fingerprint = fingerprint or sha256(files[MODEL_FILE])
    root = model_root(bucket, model_name)

    existing = find_version_by_fingerprint(bucket, model_name, fingerprint)
    if existing is not None:
        message = f"model {fingerprint[:12]} is already published as {existing}; nothing written"
        log.info(message)
        return PublishResult(existing, version_dir(bucket, model_name, existing), False, message)

    now = now or datetime.datetime.now(datetime.timezone.utc)
    version = make_version(fingerprint, now)
    full_manifest = dict(manifest)
    full_manifest.update(
        schema_version=SCHEMA_VERSION,
        model_name=model_name,
        version=version,
        created=now.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        fingerprint=fingerprint,
        files={name: {"bytes": len(data), "sha256": sha256(data)} for name, data in sorted(all_files.items())},
    )
    manifest_bytes = _json_bytes(full_manifest)

    staging = _join(root, STAGING_DIR, f"{version}-{secrets.token_hex(3)}")
    target = version_dir(bucket, model_name, version)
    previous = read_latest(bucket, model_name)
    try:
        # 1. Stage and check what landed.
        for name, data in all_files.items():
            gfile.makedirs(posixpath.dirname(_join(staging, name)))
            _write(_join(staging, name), data)
        _write(_join(staging, MANIFEST_FILE), manifest_bytes)
        _check_files(staging, full_manifest["files"])

        # 2. Make visible: files first, manifest.json last (the commit point).
        if gfile.exists(target):
            # Leftover of a crashed publish of this very version (no manifest).
            gfile.rmtree(target)
        for name in sorted(all_files):
            gfile.makedirs(posixpath.dirname(_join(target, name)))
            gfile.copy(_join(staging, name), _join(target, name), overwrite=True)
        _check_files(target, full_manifest["files"])
        _atomic_write(_join(target, MANIFEST_FILE), manifest_bytes)
    except Exception:
        _remove_quietly(target)
        _remove_quietly(staging)
        raise

    # 3. Only a complete, checked version becomes LATEST.
    _atomic_write(_join(root, LATEST_FILE), f"{version}\n".encode())
    _append_history(
        bucket,
        model_name,
        {
            "time": _utc_now_iso(),
            "action": "publish",
            "version": version,
            "previous": previous,
            "fingerprint": fingerprint,
        },
    )
    _remove_quietly(staging)
    message = f"published {version} to {target} (LATEST was {previous})"
    log.info(message)
    return PublishResult(version, target, True, message)


def _check_files(folder: str, expected: Mapping[str, Mapping[str, Any]]) -> None:
    for name, entry in expected.items():
        data = _read(_join(folder, name))
        if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
            raise BucketError(f"checksum mismatch for {_join(folder, name)}")


def verify_version(bucket: str, model_name: str, version: str | None = None, run_models: bool = True) -> VerifyResult:
    """Check a version: every file's checksum, and each ``.tflite`` replays its golden samples.

    Args:
        bucket: the bucket.
        model_name: folder under the bucket.
        version: default: the one ``LATEST`` names.
        run_models: also load and run each model on ``golden/`` inputs and
            compare with the recorded outputs (tolerance from ``golden.json``).

    Returns:
        A :class:`VerifyResult` naming each problem with its file.
    """
    manifest = read_manifest(bucket, model_name, version)
    version = manifest["version"]
    folder = version_dir(bucket, model_name, version)
    problems: list[str] = []
    checked: list[str] = []
    contents: dict[str, bytes] = {}
    for name, entry in sorted(manifest.get("files", {}).items()):
        path = _join(folder, name)
        checked.append(name)
        if not gfile.exists(path):
            problems.append(f"{name}: missing")
            continue
        data = _read(path)
        contents[name] = data
        if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
            problems.append(f"{name}: checksum mismatch (expected sha256 {entry['sha256'][:12]}...)")
    if run_models and not problems:
        problems.extend(_replay_golden(contents))
    return VerifyResult(version, tuple(checked), tuple(problems))


def _replay_golden(contents: Mapping[str, bytes]) -> list[str]:
    # Imported here: only verification needs the interpreter and numpy.
    import numpy as np

    from components import tflite_convert

    index_name = f"{GOLDEN_DIR}/{GOLDEN_INDEX}"
    models = sorted(name for name in contents if name.endswith(".tflite"))
    if index_name not in contents:
        return [f"{index_name}: missing; cannot run the models"] if models else []
    index = json.loads(contents[index_name].decode("utf-8"))
    shape = tuple(index["shape"])
    images = np.stack(
        [
            np.frombuffer(contents[f"{GOLDEN_DIR}/{s['file']}"], dtype=index["dtype"]).reshape(shape)
            for s in index["samples"]
        ]
    )
    problems = []
    for name in models:
        try:
            outputs = tflite_convert.run_tflite(contents[name], images)
        except Exception as error:  # any load/run failure is a verdict, not a crash
            problems.append(f"{name}: does not load or run: {error}")
            continue
        expected = np.array([s["expected"][name] for s in index["samples"]], dtype=np.float32)
        tolerance = float(index["tolerance"].get(name, index["tolerance"].get("default", 1e-3)))
        diff = float(np.max(np.abs(outputs - expected))) if len(expected) else 0.0
        if not diff <= tolerance:
            problems.append(f"{name}: golden outputs differ by {diff:.3g} > {tolerance:g}")
    return problems


def rollback(bucket: str, model_name: str, version: str, reason: str = "") -> str | None:
    """Point ``LATEST`` at an existing complete version and record it in the history.

    Args:
        bucket: the bucket.
        model_name: folder under the bucket.
        version: the version to make current (its checksums are checked first).
        reason: free text for the history line.

    Returns:
        The version ``LATEST`` named before.

    Raises:
        BucketError: the version does not exist, is incomplete or corrupt.
    """
    if not is_complete(bucket, model_name, version):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    result = verify_version(bucket, model_name, version, run_models=False)
    if not result.ok:
        raise BucketError(f"version {version} is corrupt: {'; '.join(result.problems)}")
    previous = read_latest(bucket, model_name)
    _atomic_write(_join(model_root(bucket, model_name), LATEST_FILE), f"{version}\n".encode())
    _append_history(
        bucket,
        model_name,
        {"time": _utc_now_iso(), "action": "rollback", "version": version, "previous": previous, "reason": reason},
    )
    log.info("LATEST of %s: %s -> %s", model_name, previous, version)
    return previous
