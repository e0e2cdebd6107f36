"""The bucket's layout: where each file of a model lives, and the checks every path goes through.

``<bucket>/<model_name>/`` holds ``versions/<version>/`` (the model files, ``golden/``, ``manifest.json``
and, when signed, ``manifest.sig``), ``LATEST`` (derived from ``history/``, see :mod:`bucket.history`),
``history/`` (one object per event), ``history.jsonl`` (read, never written) and ``.staging/``.

Every path built from a model name, version or file name goes through :func:`check_segment`, so nothing
can escape the bucket.

See docs/bucket-contract.md#layout.
"""

from __future__ import annotations

import posixpath
import re

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
# compatibility shim: docs/design-decisions.md#compatibility-shims
HISTORY_FILE = "history.jsonl"  # legacy single-file history: read, never written
HISTORY_DIR = "history"
VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"
TMP_MARK = ".tmp-"
SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


class BucketError(RuntimeError):
    """The bucket is not in the state the caller expects."""


def join(*parts: str) -> str:
    # posixpath keeps '/' for URLs (gs://, s3://) on every OS; strip stray slashes.
    return posixpath.join(parts[0].rstrip("/"), *parts[1:])


def check_segment(kind: str, value: str) -> str:
    """One path segment from outside (model name, version, file name part): plain, no traversal."""
    if not isinstance(value, str) or not SEGMENT.match(value) or value in (".", ".."):
        raise ValueError(
            f"{kind} must be a plain name (letters, digits, '.', '_', '-'; not starting with '.' or '-'). "
            f"Received {kind}={value!r}"
        )
    return value


def check_bucket(bucket: str) -> str:
    if not bucket or not isinstance(bucket, str):
        raise ValueError(f"bucket is empty. Received bucket={bucket!r}")
    if "\x00" in bucket:
        raise ValueError(f"bucket contains a NUL character. Received bucket={bucket!r}")
    return bucket


def model_root(bucket: str, model_name: str) -> str:
    """``<bucket>/<model_name>``."""
    check_bucket(bucket)
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain folder name. Received model_name={model_name!r}")
    check_segment("model_name", model_name)
    return join(bucket, model_name)


def version_dir(bucket: str, model_name: str, version: str) -> str:
    """``<bucket>/<model_name>/versions/<version>``."""
    return join(model_root(bucket, model_name), VERSIONS_DIR, check_segment("version", version))


def check_name(name: str) -> None:
    """A file name inside a version: relative, each segment plain, not the manifest or its signature."""
    if not isinstance(name, str) or not name or name.startswith("/") or name in (MANIFEST_FILE, SIGNATURE_FILE):
        raise ValueError(f"invalid file name for a version: {name!r}")
    for part in name.split("/"):
        try:
            check_segment("file name", part)
        except ValueError:
            raise ValueError(f"invalid file name for a version: {name!r}") from None
    if TMP_MARK in name:
        raise ValueError(f"invalid file name for a version: {name!r} (reserved '{TMP_MARK}')")
