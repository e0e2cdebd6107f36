"""The bucket's file operations: ``os`` for local paths, ``tf.io.gfile`` for ``gs://`` and ``ram://``.

Local paths use the ``os`` module (no TensorFlow import: ``shelf-audit models``
stays fast); ``gs://`` and ``ram://`` go through ``tf.io.gfile``, imported on
first use. :func:`atomic_write` makes one object appear whole (a temporary
sibling, then a rename).
"""

from __future__ import annotations

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


def __getattr__(name: str) -> Any:
    # ``storage.gfile``: tf.io.gfile, imported on first use only (a local bucket never imports TensorFlow).
    if name == "gfile":
        return _gfile()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _gfile() -> Any:
    import tensorflow as tf

    return tf.io.gfile


def _local(path: str) -> bool:
    return "://" not in path


def exists(path: str) -> bool:
    return os.path.exists(path) if _local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(path) if _local(path) else _gfile().isdir(path)


def listdir(path: str) -> list[str]:
    names = os.listdir(path) if _local(path) else _gfile().listdir(path)
    return sorted(name.rstrip("/") for name in names)


def makedirs(path: str) -> None:
    if _local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def read(path: str) -> bytes:
    if _local(path):
        with open(path, "rb") as f:
            return f.read()
    with _gfile().GFile(path, "rb") as f:
        return f.read()


def write(path: str, data: bytes) -> None:
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


def copy(src: str, dst: str) -> None:
    if _local(src):
        shutil.copyfile(src, dst)
    else:
        _gfile().copy(src, dst, overwrite=True)


def remove(path: str) -> None:
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


def mtime(path: str) -> float | None:
    """Modification time in seconds, or None when the filesystem does not say."""
    try:
        if _local(path):
            return os.path.getmtime(path)
        nsec = _gfile().stat(path).mtime_nsec
        return nsec / 1e9 if nsec else None
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
    """Write a temporary sibling, then rename over ``path`` (one object appears whole)."""
    tmp = _tmp_name(path)
    write(tmp, data)
    try:
        _rename(tmp, path)
    except Exception:
        remove_quietly(tmp)
        raise


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
    """Whether the bucket root is an existing folder (or a ``gs://`` prefix holding objects); errors: False."""
    try:
        return isdir(check_bucket(bucket))
    except Exception as error:  # noqa: BLE001 - e.g. a gs:// bucket that does not exist or cannot be read
        log.info("bucket %s cannot be listed: %s", bucket, error)
        return False
