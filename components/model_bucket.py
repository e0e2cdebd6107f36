"""The model bucket: layout, atomic publish, manifest, signature, LATEST and an append-only event log.

Layout (the bucket contract in the README)::

    <bucket>/<model_name>/
      versions/<version>/
        model.tflite, model_<variant>.tflite, labels.txt, golden/..., manifest.json,
        manifest.sig    Ed25519 signature of manifest.json's exact bytes (signed releases only)
      LATEST          names the current version (derived from history/, see below)
      history/        one object per event: <utc time>-<id>-<publish|rollback>-<version>.json
      history.jsonl   the single-file history of older releases (still read, never written)
      .staging/       work area of publishes in flight (never read by apps)

How a reader never sees a half-written version, on any filesystem:

1. Everything is written to ``.staging/<version>-<time>-<random>/`` and
   re-read to check the checksums.
2. The files are copied into ``versions/<version>/`` with ``manifest.sig``
   then ``manifest.json`` last (written under a temporary name, then renamed).
   **A version folder without ``manifest.json`` does not exist** for
   :func:`list_versions`, :func:`read_manifest` and the app. We do not rename
   the folder itself: on ``gs://`` a folder rename is a non-atomic copy and
   delete of every object, while a single object appears atomically.
3. A ``publish`` event is recorded (a new object: nothing is rewritten, so
   concurrent writers cannot lose each other's events), then ``LATEST`` is
   recomputed from the event log (:func:`settle_latest`).

``LATEST`` is a function of the event log (:func:`latest_from_events`), not of
who wrote last: object stores (and ``tf.io.gfile``) have no compare-and-swap,
so concurrent publishers and rollbacks agree by each recomputing it from the
same log. A re-run after a crash between ``manifest.json`` and the event
records the missing event (timestamped with the manifest's creation time, so a
rollback made since then still wins) and recomputes ``LATEST``. Stale staging
folders, temporary objects and manifest-less version folders older than a
grace period are removed at each publish (:func:`clean`).

Local paths use the ``os`` module (no TensorFlow import: ``shelf-audit models``
stays fast); ``gs://`` and ``ram://`` go through ``tf.io.gfile``, imported on
first use. Every path built from a model name, version or file name goes
through :func:`_check_segment`, so nothing can escape the bucket.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from components.signing import Signer

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
GOLDEN_DIR = "golden"
GOLDEN_INDEX = "golden.json"
# Whole camera frames (original eval JPEGs) and each model's outputs after the preprocessing contract.
GOLDEN_CAMERA_DIR = "camera"  # golden/camera/frame_XXX.jpg
GOLDEN_CAMERA_INDEX = "camera.json"  # golden/camera.json
LATEST_FILE = "LATEST"
HISTORY_FILE = "history.jsonl"  # legacy single-file history: read, never written
HISTORY_DIR = "history"
VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"
TMP_MARK = ".tmp-"
# Leftovers younger than this may belong to a publish still running elsewhere: left alone.
CLEAN_GRACE_SECONDS = 3600
# Bound on the write-then-reread loop of settle_latest (each round needs a new concurrent event).
SETTLE_ROUNDS = 50

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
_VERSION_TIME = re.compile(r"^(\d{8}T\d{6}Z)-")
_TMP_TIME = re.compile(re.escape(TMP_MARK) + r"(\d{10,})-")
_STAGING_TIME = re.compile(r"-(\d{10,})-[0-9a-f]+$")


def __getattr__(name: str) -> Any:
    # ``model_bucket.gfile`` (older callers and tests): tf.io.gfile, imported on first use only.
    if name == "gfile":
        return _gfile()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _gfile() -> Any:
    import tensorflow as tf

    return tf.io.gfile


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
    """Outcome of :func:`verify_version`; ``problems`` empty means ok.

    ``signature`` says what the signature check established ("unsigned",
    "signed ... (pinned key)" or "signed ... (key from the manifest: ...)");
    ``warnings`` are things worth saying that do not fail the check.
    """

    version: str
    checked: tuple[str, ...]
    problems: tuple[str, ...]
    signature: str = "not checked"
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


# -- paths ----------------------------------------------------------------


def _local(path: str) -> bool:
    return "://" not in path


def _join(*parts: str) -> str:
    # posixpath keeps '/' for gs:// and ram:// on every OS; strip stray slashes.
    return posixpath.join(parts[0].rstrip("/"), *parts[1:])


def _check_segment(kind: str, value: str) -> str:
    """One path segment from outside (model name, version, file name part): plain, no traversal."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or value in (".", ".."):
        raise ValueError(
            f"{kind} must be a plain name (letters, digits, '.', '_', '-'; not starting with '.' or '-'). "
            f"Received {kind}={value!r}"
        )
    return value


def _check_bucket(bucket: str) -> str:
    if not bucket or not isinstance(bucket, str):
        raise ValueError(f"bucket is empty. Received bucket={bucket!r}")
    if "\x00" in bucket:
        raise ValueError(f"bucket contains a NUL character. Received bucket={bucket!r}")
    return bucket


def model_root(bucket: str, model_name: str) -> str:
    """``<bucket>/<model_name>``."""
    _check_bucket(bucket)
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain folder name. Received model_name={model_name!r}")
    _check_segment("model_name", model_name)
    return _join(bucket, model_name)


def version_dir(bucket: str, model_name: str, version: str) -> str:
    """``<bucket>/<model_name>/versions/<version>``."""
    return _join(model_root(bucket, model_name), VERSIONS_DIR, _check_segment("version", version))


def _check_name(name: str) -> None:
    """A file name inside a version: relative, each segment plain, not the manifest or its signature."""
    if not isinstance(name, str) or not name or name.startswith("/") or name in (MANIFEST_FILE, SIGNATURE_FILE):
        raise ValueError(f"invalid file name for a version: {name!r}")
    for part in name.split("/"):
        try:
            _check_segment("file name", part)
        except ValueError:
            raise ValueError(f"invalid file name for a version: {name!r}") from None
    if TMP_MARK in name:
        raise ValueError(f"invalid file name for a version: {name!r} (reserved '{TMP_MARK}')")


# -- filesystem: os for local paths, tf.io.gfile for gs:// and ram:// ------


def _exists(path: str) -> bool:
    return os.path.exists(path) if _local(path) else _gfile().exists(path)


def _isdir(path: str) -> bool:
    return os.path.isdir(path) if _local(path) else _gfile().isdir(path)


def _listdir(path: str) -> list[str]:
    names = os.listdir(path) if _local(path) else _gfile().listdir(path)
    return sorted(name.rstrip("/") for name in names)


def _makedirs(path: str) -> None:
    if _local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def _read(path: str) -> bytes:
    if _local(path):
        with open(path, "rb") as f:
            return f.read()
    with _gfile().GFile(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    if _local(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    with _gfile().GFile(path, "wb") as f:
        f.write(data)


def _rename(src: str, dst: str) -> None:
    if _local(src):
        os.replace(src, dst)
    else:
        _gfile().rename(src, dst, overwrite=True)


def _copy(src: str, dst: str) -> None:
    if _local(src):
        shutil.copyfile(src, dst)
    else:
        _gfile().copy(src, dst, overwrite=True)


def _remove(path: str) -> None:
    if _local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    gfile = _gfile()
    if gfile.isdir(path):
        gfile.rmtree(path)
    elif gfile.exists(path):
        gfile.remove(path)


def _mtime(path: str) -> float | None:
    """Modification time in seconds, or None when the filesystem does not say."""
    try:
        if _local(path):
            return os.path.getmtime(path)
        nsec = _gfile().stat(path).mtime_nsec
        return nsec / 1e9 if nsec else None
    except Exception:  # noqa: BLE001 - unknown age: treated as young (left alone)
        return None


def _remove_quietly(path: str) -> None:
    try:
        _remove(path)
    except Exception as error:  # cleanup must not hide the original error
        log.warning("could not remove %s: %s", path, error)


def _tmp_name(path: str) -> str:
    return f"{path}{TMP_MARK}{int(time.time())}-{secrets.token_hex(4)}"


def _atomic_write(path: str, data: bytes) -> None:
    """Write a temporary sibling, then rename over ``path`` (one object appears whole)."""
    tmp = _tmp_name(path)
    _write(tmp, data)
    try:
        _rename(tmp, path)
    except Exception:
        _remove_quietly(tmp)
        raise


def _step(name: str) -> None:
    """A named point of :func:`publish` (tests replace this to simulate a crash right after that step)."""


# -- small helpers ----------------------------------------------------------


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def make_version(fingerprint: str, now: datetime.datetime | None = None) -> str:
    """``20261125T120102Z-<6 hex>``: sorts by time, unique per model pushed."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{fingerprint[:6]}"


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def probe_writable(bucket: str) -> None:
    """Check that ``bucket`` can be written: create it if needed, write, read back and delete a small object.

    Raises:
        BucketError: ``bucket <path> is not writable: <reason>``.
    """
    try:
        _check_bucket(bucket)
    except ValueError as error:
        raise BucketError(f"bucket {bucket!r} is not writable: {error}") from None
    probe = _join(bucket, f".probe-{uuid.uuid4().hex}")
    payload = b"shelf-audit write probe\n"
    try:
        _makedirs(bucket)
        _write(probe, payload)
        if _read(probe) != payload:
            raise OSError("the probe object read back differs from what was written")
    except Exception as error:  # noqa: BLE001 - any failure is "not writable", with its reason
        raise BucketError(f"bucket {bucket} is not writable: {error}") from None
    finally:
        try:
            if _exists(probe):
                _remove(probe)
        except Exception as error:  # noqa: BLE001
            log.warning("bucket %s: could not remove the probe object %s: %s", bucket, probe, error)


# -- reading ------------------------------------------------------------------


def bucket_exists(bucket: str) -> bool:
    """Whether the bucket root is an existing folder (or a ``gs://`` prefix holding objects); errors: False."""
    try:
        return _isdir(_check_bucket(bucket))
    except Exception as error:  # noqa: BLE001 - e.g. a gs:// bucket that does not exist or cannot be read
        log.info("bucket %s cannot be listed: %s", bucket, error)
        return False


def read_latest(bucket: str, model_name: str) -> str | None:
    """The version ``LATEST`` names, or None before the first publish."""
    path = _join(model_root(bucket, model_name), LATEST_FILE)
    if not _exists(path):
        return None
    return _read(path).decode("utf-8").strip() or None


def is_complete(bucket: str, model_name: str, version: str) -> bool:
    """A version exists only once its ``manifest.json`` is in place."""
    return _exists(_join(version_dir(bucket, model_name, version), MANIFEST_FILE))


def version_folders(bucket: str, model_name: str) -> list[str]:
    """Every folder under ``versions/`` (complete or not), sorted; names that are not plain are skipped."""
    root = _join(model_root(bucket, model_name), VERSIONS_DIR)
    if not _isdir(root):
        return []
    return [name for name in _listdir(root) if _SEGMENT.match(name)]


def list_versions(bucket: str, model_name: str) -> list[str]:
    """Complete versions, oldest first (version names sort by time)."""
    return [name for name in version_folders(bucket, model_name) if is_complete(bucket, model_name, name)]


def read_manifest_bytes(bucket: str, model_name: str, version: str | None = None) -> tuple[str, bytes]:
    """``(version, exact bytes of its manifest.json)``; default version: the one ``LATEST`` names.

    Raises:
        BucketError: no such complete version, or nothing published yet.
    """
    version = version or read_latest(bucket, model_name)
    if version is None:
        raise BucketError(f"nothing published under {model_root(bucket, model_name)}")
    path = _join(version_dir(bucket, model_name, version), MANIFEST_FILE)
    if not _exists(path):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    return version, _read(path)


def read_manifest(bucket: str, model_name: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the one ``LATEST`` names).

    Raises:
        BucketError: no such complete version, nothing published yet, or a manifest that is not valid JSON
            (the message names the version and the file).
    """
    version, data = read_manifest_bytes(bucket, model_name, version)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        path = _join(version_dir(bucket, model_name, version), MANIFEST_FILE)
        raise BucketError(f"version {version}: {path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise BucketError(f"version {version}: manifest.json is not a JSON object")
    return manifest


def find_version_by_fingerprint(bucket: str, model_name: str, fingerprint: str) -> str | None:
    """Newest complete version whose manifest records ``fingerprint`` (unreadable manifests are skipped, logged)."""
    for version in reversed(list_versions(bucket, model_name)):
        # The fingerprint prefix is in the name: only open candidate manifests.
        if not version.endswith(f"-{fingerprint[:6]}"):
            continue
        try:
            if read_manifest(bucket, model_name, version).get("fingerprint") == fingerprint:
                return version
        except BucketError as error:
            log.warning("skipping %s", error)
    return None


# -- the event log and LATEST -------------------------------------------------


def _event_time(moment: datetime.datetime) -> str:
    return f"{moment.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%S.%fZ}"


def _event_names(root: str) -> list[str]:
    folder = _join(root, HISTORY_DIR)
    if not _isdir(folder):
        return []
    return [name for name in _listdir(folder) if name.endswith(".json") and TMP_MARK not in name]


def _legacy_history(root: str) -> list[dict[str, Any]]:
    path = _join(root, HISTORY_FILE)
    if not _exists(path):
        return []
    entries = []
    for number, line in enumerate(_read(path).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            log.warning("%s line %d is not JSON (%s); skipped", path, number, error)
    return entries


def _read_events(root: str, names: Sequence[str]) -> list[dict[str, Any]]:
    events = _legacy_history(root)
    for name in names:
        path = _join(root, HISTORY_DIR, name)
        try:
            event = json.loads(_read(path).decode("utf-8"))
        except Exception as error:  # noqa: BLE001 - an unreadable event is named and skipped
            log.warning("history event %s cannot be read (%s); skipped", path, error)
            continue
        event["event"] = name
        events.append(event)
    return events


def read_history(bucket: str, model_name: str) -> list[dict[str, Any]]:
    """Every history event, oldest first: the legacy ``history.jsonl`` lines, then ``history/`` in name order."""
    root = model_root(bucket, model_name)
    return _read_events(root, _event_names(root))


def latest_from_events(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The version ``LATEST`` must name after ``events`` (oldest first); None without any.

    A rollback moves ``LATEST`` to its target. A publish moves it only if its
    version is newer (version names sort by creation time) than every version
    a publish has made ``LATEST`` so far: a slower publish of an older build,
    finishing after a newer one or after a rollback, does not move it back.
    """
    latest: str | None = None
    newest_published: str | None = None
    for event in events:
        action, version = event.get("action"), event.get("version")
        if not isinstance(version, str) or not version:
            continue
        if action == "rollback":
            latest = version
        elif action == "publish" and (newest_published is None or version > newest_published):
            latest = newest_published = version
    return latest


def _record_event(root: str, action: str, version: str, moment: datetime.datetime, **fields: Any) -> str:
    """Write one new event object (never rewriting another); return its name."""
    _check_segment("version", version)
    name = f"{_event_time(moment)}-{uuid.uuid4().hex[:12]}-{action}-{version}.json"
    entry = {"action": action, "version": version, "time": moment.isoformat(timespec="seconds"), **fields}
    folder = _join(root, HISTORY_DIR)
    _makedirs(folder)
    _atomic_write(_join(folder, name), _json_bytes(entry))
    return name


def settle_latest(bucket: str, model_name: str) -> str | None:
    """Write ``LATEST`` as :func:`latest_from_events` of the log, re-listing until the log stops growing.

    Why the final ``LATEST`` is right once every writer has finished: each
    writer (publish, rollback, repair) records its event *before* calling this,
    and here always writes after listing. Take the last write to ``LATEST``, by
    writer W, of f(L) where L is the log W listed just before. W then re-listed
    and found L unchanged (else it would have written again). An event recorded
    after that re-listing would have a writer that lists, then writes, after
    it, i.e. after W's write: a contradiction with W's being the last write. So
    L holds every event, events are never deleted, and ``LATEST`` = f(whole
    log), the same value whoever finished last. While writers still run, a slow
    one may briefly write an older value; its own re-listing corrects it.

    Returns:
        The version ``LATEST`` names (unchanged and None when the log is empty:
        buckets from before any history keep their ``LATEST``).
    """
    root = model_root(bucket, model_name)
    names = _event_names(root)
    for _ in range(SETTLE_ROUNDS):
        target = latest_from_events(_read_events(root, names))
        if target is None:
            return read_latest(bucket, model_name)
        if not is_complete(bucket, model_name, target):
            raise BucketError(f"history of {root} makes {target} LATEST, but it has no manifest.json")
        _atomic_write(_join(root, LATEST_FILE), f"{target}\n".encode())
        again = _event_names(root)
        if again == names:
            return target
        names = again
    log.warning("LATEST of %s: the history kept growing over %d rounds; last value written", root, SETTLE_ROUNDS)
    return read_latest(bucket, model_name)


def _publish_event(events: Sequence[Mapping[str, Any]], version: str) -> Mapping[str, Any] | None:
    for event in events:
        if event.get("action") == "publish" and event.get("version") == version:
            return event
    return None


def _finish(bucket: str, model_name: str, version: str, manifest_bytes: bytes) -> tuple[bool, str | None]:
    """Make sure ``version`` (complete) has its publish event, then settle ``LATEST``.

    Returns ``(repaired, latest)``: ``repaired`` is True when the event was missing (a crash between
    manifest.json and the event) and was recorded now, with the manifest's creation time.
    """
    root = model_root(bucket, model_name)
    repaired = False
    if _publish_event(read_history(bucket, model_name), version) is None:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        try:
            moment = datetime.datetime.fromisoformat(manifest["created"])
        except (KeyError, TypeError, ValueError):
            moment = _utc_now()
        _record_event(
            root,
            "publish",
            version,
            moment,
            fingerprint=manifest.get("fingerprint"),
            manifest_sha256=sha256(manifest_bytes),
            repaired=True,
        )
        repaired = True
        log.warning("%s: version %s had no publish event (an interrupted publish): recorded now", root, version)
    return repaired, settle_latest(bucket, model_name)


def finish_interrupted(bucket: str, model_name: str, version: str) -> str:
    """For an already-complete ``version``: record a missing publish event and settle ``LATEST``; a message.

    A rollback recorded since the version was created keeps ``LATEST`` where it put it.
    """
    _, manifest_bytes = read_manifest_bytes(bucket, model_name, version)
    repaired, latest = _finish(bucket, model_name, version, manifest_bytes)
    if repaired:
        return f"finished the interrupted publish of {version}: publish event recorded, LATEST is {latest}"
    return f"{version} is already published (LATEST is {latest}); nothing written"


# -- cleanup ------------------------------------------------------------------


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
        modified = _mtime(path)
        return min(named, now - modified) if modified else named
    modified = _mtime(path)
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
    staging = _join(root, STAGING_DIR)
    if _isdir(staging):
        candidates += [(name, _join(staging, name)) for name in _listdir(staging)]
    if _isdir(root):
        candidates += [(name, _join(root, name)) for name in _listdir(root) if TMP_MARK in name]
    history = _join(root, HISTORY_DIR)
    if _isdir(history):
        candidates += [(name, _join(history, name)) for name in _listdir(history) if TMP_MARK in name]
    for version in version_folders(bucket, model_name):
        folder = version_dir(bucket, model_name, version)
        if not _exists(_join(folder, MANIFEST_FILE)):
            candidates.append((version, folder))
        elif _isdir(folder):
            candidates += [(name, _join(folder, name)) for name in _listdir(folder) if TMP_MARK in name]
    removed = []
    for name, path in candidates:
        age = _age(name, path, now)
        if age is not None and age >= grace_seconds:
            _remove_quietly(path)
            if not _exists(path):
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
    extra_files: Mapping[str, bytes] | None = None,
    signer: Signer | None = None,
) -> PublishResult:
    """Publish one version atomically, record its event and settle ``LATEST``.

    Args:
        bucket: ``/local/path``, ``gs://bucket/prefix`` or ``ram://...``.
        model_name: folder under the bucket.
        files: name -> bytes; must hold ``model.tflite``.
        manifest: from :func:`build_manifest` (extra keys are kept).
        golden: name -> bytes, written under ``golden/``.
        fingerprint: identity of the model for deduplication (sha256 of the
            SavedModel content); default: sha256 of ``model.tflite``.
        now: creation time (tests).
        extra_files: more files for the version (e.g. ``{"report.html": ...}``),
            listed with their sha256 in the manifest like the others.
        signer: signs the manifest's bytes (:mod:`components.signing`); None: unsigned.

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
        _check_name(name)
    fingerprint = fingerprint or sha256(files[MODEL_FILE])
    root = model_root(bucket, model_name)

    try:
        clean(bucket, model_name)
    except Exception as error:  # noqa: BLE001 - cleanup is best effort: never blocks a publish
        log.warning("cleanup of %s failed: %s", root, error)

    existing = find_version_by_fingerprint(bucket, model_name, fingerprint)
    if existing is not None:
        message = finish_interrupted(bucket, model_name, existing)
        if "already published" in message:
            message = f"model {fingerprint[:12]} is already published as {existing}; nothing written"
        log.info(message)
        return PublishResult(existing, version_dir(bucket, model_name, existing), False, message)

    now = now or _utc_now()
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
    signature = None
    if signer is not None:
        full_manifest["signing"] = signer.manifest_block()
    manifest_bytes = _json_bytes(full_manifest)
    if signer is not None:
        signature = signer.sign(manifest_bytes)

    staging = _join(root, STAGING_DIR, f"{version}-{int(time.time())}-{secrets.token_hex(3)}")
    target = version_dir(bucket, model_name, version)
    previous = read_latest(bucket, model_name)
    try:
        # 1. Stage and check what landed.
        for name, data in all_files.items():
            _makedirs(posixpath.dirname(_join(staging, name)))
            _write(_join(staging, name), data)
        _write(_join(staging, MANIFEST_FILE), manifest_bytes)
        _check_files(staging, full_manifest["files"])
        _step("staged")

        # 2. Make visible: files first, then the signature, manifest.json last (the commit point).
        if _exists(target):
            # Leftover of a crashed publish of this very version (no manifest).
            _remove(target)
        for name in sorted(all_files):
            _makedirs(posixpath.dirname(_join(target, name)))
            _copy(_join(staging, name), _join(target, name))
        _check_files(target, full_manifest["files"])
        if signature is not None:
            _atomic_write(_join(target, SIGNATURE_FILE), signature)
        _step("copied")
        _atomic_write(_join(target, MANIFEST_FILE), manifest_bytes)
    except Exception:
        if not _exists(_join(target, MANIFEST_FILE)):
            _remove_quietly(target)
        _remove_quietly(staging)
        raise
    _step("manifest")

    # 3. The event, then LATEST from the log: a complete, checked version only.
    _record_event(
        root,
        "publish",
        version,
        _utc_now(),
        previous=previous,
        fingerprint=fingerprint,
        manifest_sha256=sha256(manifest_bytes),
    )
    _step("event")
    latest = settle_latest(bucket, model_name)
    _step("latest")
    _remove_quietly(staging)
    signed = f"signed, key {full_manifest['signing']['public_key_fingerprint']}" if signer is not None else "unsigned"
    if latest == version:
        message = f"published {version} to {target} (LATEST was {previous}; {signed})"
    else:
        message = f"published {version} to {target} ({signed}); LATEST stays {latest} (newer, or rolled back to)"
    log.info(message)
    return PublishResult(version, target, True, message)


def _check_files(folder: str, expected: Mapping[str, Mapping[str, Any]]) -> None:
    for name, entry in expected.items():
        data = _read(_join(folder, name))
        if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
            raise BucketError(f"checksum mismatch for {_join(folder, name)}")


def verify_version(
    bucket: str,
    model_name: str,
    version: str | None = None,
    run_models: bool = True,
    public_key: bytes | None = None,
) -> VerifyResult:
    """Check a version: its signature, every file's checksum, and each ``.tflite`` replays its golden samples.

    Args:
        bucket: the bucket.
        model_name: folder under the bucket.
        version: default: the one ``LATEST`` names.
        run_models: also load and run each model on ``golden/`` inputs and
            compare with the recorded outputs (tolerance from ``golden.json``;
            this alone imports TensorFlow Lite).
        public_key: the pinned Ed25519 public key (raw 32 bytes or PEM). With
            it, an unsigned version or one signed by another key fails.
            Without it, a signature is checked against the key the manifest
            carries, which proves integrity, not origin (a warning says so).

    Returns:
        A :class:`VerifyResult` naming each problem with its file.
    """
    from components import signing

    version, manifest_bytes = read_manifest_bytes(bucket, model_name, version)
    folder = version_dir(bucket, model_name, version)
    problems: list[str] = []
    warnings: list[str] = []

    # The signature covers the manifest's exact bytes, so it goes first.
    sig_path = _join(folder, SIGNATURE_FILE)
    sig = _read(sig_path) if _exists(sig_path) else None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        manifest = None
        problems.append(f"{MANIFEST_FILE}: not valid JSON ({error})")
    block = manifest.get("signing") if isinstance(manifest, dict) else None
    verdict = signing.verify_manifest(manifest_bytes, sig, block, public_key)
    problems.extend(verdict.problems)
    warnings.extend(verdict.warnings)
    if isinstance(manifest, dict) and manifest.get("version") != version:
        problems.append(f"{MANIFEST_FILE}: names version {manifest.get('version')!r}, folder is {version!r}")

    # A record of the manifest's sha256 at publish time (catches accidental changes of unsigned manifests).
    event = _publish_event(read_history(bucket, model_name), version)
    recorded = event.get("manifest_sha256") if event else None
    if recorded and recorded != sha256(manifest_bytes):
        problems.append(
            f"{MANIFEST_FILE}: sha256 differs from the one recorded when it was published "
            f"({HISTORY_DIR}/{event.get('event', '?')})"
        )

    checked: list[str] = [MANIFEST_FILE]
    contents: dict[str, bytes] = {}
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name, entry in sorted(files.items()):
        try:
            _check_name(name)
        except ValueError as error:
            problems.append(f"{name}: {error}")
            continue
        path = _join(folder, name)
        checked.append(name)
        if not _exists(path):
            problems.append(f"{name}: missing")
            continue
        data = _read(path)
        contents[name] = data
        if len(data) != entry.get("bytes") or sha256(data) != entry.get("sha256"):
            problems.append(f"{name}: checksum mismatch (expected sha256 {str(entry.get('sha256'))[:12]}...)")
    if run_models and not problems:
        problems.extend(_replay_golden(contents))
    return VerifyResult(version, tuple(checked), tuple(problems), verdict.summary, tuple(warnings))


def _replay_golden(contents: Mapping[str, bytes]) -> list[str]:
    # Imported here: only verification needs the interpreter and numpy.
    import numpy as np

    from shelf_tflite import runtime

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
            outputs = runtime.run_tflite(contents[name], images)
        except Exception as error:  # any load/run failure is a verdict, not a crash
            problems.append(f"{name}: does not load or run: {error}")
            continue
        problems += _differs(name, outputs, index["samples"], index["tolerance"], "golden outputs")
    return problems + _replay_camera(contents, models)


def _differs(
    name: str, outputs: Any, samples: Sequence[Mapping[str, Any]], tolerances: Mapping[str, float], what: str
) -> list[str]:
    """``[problem]`` when a model's outputs stray from the samples' ``expected[name]`` beyond its tolerance, else []."""
    import numpy as np

    expected = np.array([s["expected"][name] for s in samples], dtype=np.float32)
    tolerance = float(tolerances.get(name, tolerances.get("default", 1e-3)))
    diff = float(np.max(np.abs(outputs - expected))) if len(expected) else 0.0
    return [] if diff <= tolerance else [f"{name}: {what} differ by {diff:.3g} > {tolerance:g}"]


def _replay_camera(contents: Mapping[str, bytes], models: Sequence[str]) -> list[str]:
    """Each model on the camera goldens, preprocessed by the contract for its input (gray or RGB)."""
    import numpy as np

    from shelf_model import preprocessing
    from shelf_tflite import runtime

    index_name = f"{GOLDEN_DIR}/{GOLDEN_CAMERA_INDEX}"
    if index_name not in contents:
        return []  # versions published before camera goldens existed
    index = json.loads(contents[index_name].decode("utf-8"))
    problems = []
    for name in models:
        samples = [s for s in index["samples"] if name in s["expected"]]
        if not samples:
            continue
        try:
            height, _, channels = runtime.input_image_shape(contents[name])
            images = np.stack(
                [
                    preprocessing.camera_frame_input(contents[f"{GOLDEN_DIR}/{s['file']}"], channels, height).numpy()
                    for s in samples
                ]
            )
            outputs = runtime.run_tflite(contents[name], images)
        except Exception as error:  # a verdict, not a crash
            problems.append(f"{name}: does not run on the camera goldens: {error}")
            continue
        problems += _differs(name, outputs, samples, index["tolerance"], "camera golden outputs")
    return problems


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
    if not is_complete(bucket, model_name, version):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    result = verify_version(bucket, model_name, version, run_models=False)
    if not result.ok:
        raise BucketError(f"version {version} is corrupt: {'; '.join(result.problems)}")
    previous = read_latest(bucket, model_name)
    _record_event(model_root(bucket, model_name), "rollback", version, _utc_now(), previous=previous, reason=reason)
    latest = settle_latest(bucket, model_name)
    log.info("LATEST of %s: %s -> %s", model_name, previous, latest)
    return previous
