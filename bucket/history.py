"""The append-only event log of a model and ``LATEST``, which is derived from it.

``LATEST`` is a function of the event log (:func:`latest_from_events`), not of
who wrote last: object stores offer no compare-and-swap on ``LATEST`` that every store shares,
so concurrent publishers and rollbacks agree by each recomputing it from the
same log (:func:`settle_latest`). An event is a new object,
created only if absent (:func:`record_event`): nothing is rewritten, so concurrent writers cannot lose
each other's events.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bucket import storage, versions
from bucket.layout import HISTORY_DIR, HISTORY_FILE, LATEST_FILE, TMP_MARK, BucketError, check_segment, join, model_root

log = logging.getLogger(__name__)


# Bound on the write-then-reread loop of settle_latest (each round needs a new concurrent event).
SETTLE_ROUNDS = 50


def _event_time(moment: datetime.datetime) -> str:
    return f"{moment.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%S.%fZ}"


def _event_names(root: str) -> list[str]:
    folder = join(root, HISTORY_DIR)
    if not storage.isdir(folder):
        return []
    return [name for name in storage.listdir(folder) if name.endswith(".json") and TMP_MARK not in name]


def _legacy_history(root: str) -> list[dict[str, Any]]:
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    path = join(root, HISTORY_FILE)
    if not storage.exists(path):
        return []
    entries = []
    for number, line in enumerate(storage.read(path).decode("utf-8").splitlines(), 1):
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
        path = join(root, HISTORY_DIR, name)
        try:
            event = json.loads(storage.read(path).decode("utf-8"))
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


def record_event(root: str, action: str, version: str, moment: datetime.datetime, **fields: Any) -> str:
    """Write one new event object (never rewriting another); return its name."""
    check_segment("version", version)
    name = f"{_event_time(moment)}-{uuid.uuid4().hex[:12]}-{action}-{version}.json"
    entry = {"action": action, "version": version, "time": moment.isoformat(timespec="seconds"), **fields}
    folder = join(root, HISTORY_DIR)
    storage.makedirs(folder)
    storage.create(join(folder, name), storage.json_bytes(entry))
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
            return versions.read_latest(bucket, model_name)
        if not versions.is_complete(bucket, model_name, target):
            raise BucketError(f"history of {root} makes {target} LATEST, but it has no manifest.json")
        storage.atomic_write(join(root, LATEST_FILE), f"{target}\n".encode())
        again = _event_names(root)
        if again == names:
            return target
        names = again
    log.warning("LATEST of %s: the history kept growing over %d rounds; last value written", root, SETTLE_ROUNDS)
    return versions.read_latest(bucket, model_name)


def publish_event(events: Sequence[Mapping[str, Any]], version: str) -> Mapping[str, Any] | None:
    for event in events:
        if event.get("action") == "publish" and event.get("version") == version:
            return event
    return None
