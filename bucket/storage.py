"""The bucket's file operations: ``os`` for local paths, fsspec for every URL (``gs://``, ``s3://``, ``memory://``).

Local paths use the ``os`` module; a URL goes through :func:`fsspec.core.url_to_fs`
(gcsfs for ``gs://``, s3fs for ``s3://``, fsspec's own ``memory://`` in tests).
Nothing here imports TensorFlow, so ``shelf-audit models`` stays fast on any store.

Three ways to write one object:

* :func:`write`: plain, overwrites (staging, the write probe);
* :func:`atomic_write`: appears whole, overwrites (``LATEST``): a temporary
  sibling renamed over it locally; one PUT on an object store, which is atomic;
* :func:`create`: appears whole and only if nothing is there (a version's files, its
  manifest and signature, history events): ``os.link`` locally, a generation
  precondition (``ifGenerationMatch=0``) on GCS, ``If-None-Match: *`` on S3. A
  second create raises :class:`~bucket.layout.BucketError` naming the URL.

Credentials and endpoints come from each client's standard sources only: GCS
reads ``STORAGE_EMULATOR_HOST`` and application default credentials, S3 the
``AWS_*`` variables (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``...) and ``~/.aws``.
See docs/bucket-contract.md#object-stores.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import uuid
from typing import Any

from bucket.layout import TMP_MARK, BucketError, check_bucket, join

log = logging.getLogger(__name__)

# Object stores: no folders (a prefix exists once it holds an object) and a single PUT appears whole.
OBJECT_STORES = ("gs", "gcs", "s3", "s3a")


def _local(path: str) -> bool:
    return "://" not in path


def _protocol(path: str) -> str:
    return path.split("://", 1)[0].lower()


def _fs(path: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for a URL.

    Listings are never cached: concurrent writers re-list the history to settle
    ``LATEST`` and must see each other's events. With ``STORAGE_EMULATOR_HOST``
    set, GCS is reached without credentials, as Google's own client does
    against an emulator.
    """
    import fsspec.core

    options: dict[str, Any] = {}
    protocol = _protocol(path)
    if protocol in OBJECT_STORES:
        options["use_listings_cache"] = False
    if protocol in ("gs", "gcs") and os.environ.get("STORAGE_EMULATOR_HOST"):
        options["token"] = "anon"
    try:
        return fsspec.core.url_to_fs(path, **options)
    except ValueError as error:  # an unknown protocol
        raise BucketError(f"{path}: no filesystem for this URL ({error})") from None


def exists(path: str) -> bool:
    if _local(path):
        return os.path.exists(path)
    fs, inner = _fs(path)
    return bool(fs.exists(inner))


def isdir(path: str) -> bool:
    if _local(path):
        return os.path.isdir(path)
    fs, inner = _fs(path)
    return bool(fs.isdir(inner))


def listdir(path: str) -> list[str]:
    """The names (not paths) directly under ``path``, sorted."""
    if _local(path):
        return sorted(os.listdir(path))
    fs, inner = _fs(path)
    inner = inner.rstrip("/")
    entries = (entry.rstrip("/") for entry in fs.ls(inner, detail=False))
    # An object store may list a folder placeholder (the prefix itself) among its children.
    return sorted({entry.rsplit("/", 1)[-1] for entry in entries if entry and entry != inner})


def makedirs(path: str) -> None:
    """Create a folder and its parents; nothing on an object store (a prefix appears with its first object)."""
    if _local(path):
        os.makedirs(path, exist_ok=True)
    elif _protocol(path) not in OBJECT_STORES:
        fs, inner = _fs(path)
        fs.makedirs(inner, exist_ok=True)


def read(path: str) -> bytes:
    if _local(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = _fs(path)
    return bytes(fs.cat_file(inner))


def write(path: str, data: bytes) -> None:
    """Write ``path`` (overwriting); a reader may see a partial file locally."""
    if _local(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    fs, inner = _fs(path)
    fs.pipe_file(inner, data)


def remove(path: str) -> None:
    """Remove a file or a folder (an object or every object under a prefix); nothing when absent."""
    if _local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    fs, inner = _fs(path)
    if fs.isdir(inner):
        fs.rm(inner, recursive=True)
    elif fs.exists(inner):
        fs.rm_file(inner)


def _seconds(value: Any) -> float | None:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    if isinstance(value, str) and value:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def mtime(path: str) -> float | None:
    """Modification time in seconds, or None when the store does not say (a prefix has none)."""
    try:
        if _local(path):
            return os.path.getmtime(path)
        fs, inner = _fs(path)
        info = fs.info(inner)
        for key in ("mtime", "LastModified", "updated", "created"):
            seconds = _seconds(info.get(key))
            if seconds is not None:
                return seconds
        return None
    except Exception:  # noqa: BLE001 - unknown age: treated as young (left alone)
        return None


def remove_quietly(path: str) -> None:
    try:
        remove(path)
    except Exception as error:  # cleanup must not hide the original error
        log.warning("could not remove %s: %s", path, error)


def _tmp_name(path: str) -> str:
    return f"{path}{TMP_MARK}{int(time.time())}-{secrets.token_hex(4)}"


def atomic_write(path: str, data: bytes) -> None:
    """Make ``path`` hold ``data``, overwriting; a reader sees the old or the new bytes, never a part."""
    if not _local(path):
        write(path, data)  # one PUT: the object appears whole
        return
    tmp = _tmp_name(path)
    write(tmp, data)
    try:
        os.replace(tmp, path)
    except Exception:
        remove_quietly(tmp)
        raise


def create(path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, whole, only if nothing is there.

    Raises:
        BucketError: ``<path> already exists: not overwritten`` (another writer made it first).
    """
    if _local(path):
        tmp = _tmp_name(path)
        write(tmp, data)
        try:
            os.link(tmp, path)  # atomic, and fails when path exists
        except FileExistsError:
            raise BucketError(f"{path} already exists: not overwritten") from None
        finally:
            remove_quietly(tmp)
        return
    fs, inner = _fs(path)
    try:
        fs.pipe_file(inner, data, mode="create")
    except FileExistsError:
        raise BucketError(f"{path} already exists: not overwritten") from None


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def probe_writable(bucket: str) -> None:
    """Check that ``bucket`` can be written: create it if needed, write, read back and delete a small object.

    Raises:
        BucketError: ``bucket <path> is not writable: <reason>``.
    """
    try:
        check_bucket(bucket)
    except ValueError as error:
        raise BucketError(f"bucket {bucket!r} is not writable: {error}") from None
    probe = join(bucket, f".probe-{uuid.uuid4().hex}")
    payload = b"shelf-audit write probe\n"
    try:
        makedirs(bucket)
        write(probe, payload)
        if read(probe) != payload:
            raise OSError("the probe object read back differs from what was written")
    except Exception as error:  # noqa: BLE001 - any failure is "not writable", with its reason
        raise BucketError(f"bucket {bucket} is not writable: {error}") from None
    finally:
        try:
            if exists(probe):
                remove(probe)
        except Exception as error:  # noqa: BLE001
            log.warning("bucket %s: could not remove the probe object %s: %s", bucket, probe, error)


def bucket_exists(bucket: str) -> bool:
    """Whether the bucket root is an existing folder (or an object store prefix holding objects); errors: False."""
    try:
        return isdir(check_bucket(bucket))
    except Exception as error:  # noqa: BLE001 - e.g. a gs:// bucket that does not exist or cannot be read
        log.info("bucket %s cannot be listed: %s", bucket, error)
        return False
