"""The versions of a model: their names, the complete ones, their manifests, and the one ``LATEST`` names.

**A version folder without ``manifest.json`` does not exist** for
:func:`list_versions`, :func:`read_manifest` and the app (``manifest.json`` is
the last file a publish writes: :mod:`bucket.publish`).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from bucket import storage
from bucket.layout import LATEST_FILE, MANIFEST_FILE, SEGMENT, VERSIONS_DIR, BucketError, join, model_root, version_dir

log = logging.getLogger(__name__)


def make_version(fingerprint: str, now: datetime.datetime | None = None) -> str:
    """``20261125T120102Z-<6 hex>``: sorts by time, unique per model pushed."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{fingerprint[:6]}"


def read_latest(bucket: str, model_name: str) -> str | None:
    """The version ``LATEST`` names, or None before the first publish."""
    path = join(model_root(bucket, model_name), LATEST_FILE)
    if not storage.exists(path):
        return None
    return storage.read(path).decode("utf-8").strip() or None


def is_complete(bucket: str, model_name: str, version: str) -> bool:
    """A version exists only once its ``manifest.json`` is in place."""
    return storage.exists(join(version_dir(bucket, model_name, version), MANIFEST_FILE))


def version_folders(bucket: str, model_name: str) -> list[str]:
    """Every folder under ``versions/`` (complete or not), sorted; names that are not plain are skipped."""
    root = join(model_root(bucket, model_name), VERSIONS_DIR)
    if not storage.isdir(root):
        return []
    return [name for name in storage.listdir(root) if SEGMENT.match(name)]


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
    path = join(version_dir(bucket, model_name, version), MANIFEST_FILE)
    if not storage.exists(path):
        raise BucketError(f"no complete version {version!r} under {model_root(bucket, model_name)}")
    return version, storage.read(path)


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
        path = join(version_dir(bucket, model_name, version), MANIFEST_FILE)
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
