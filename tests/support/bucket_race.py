"""Publishers, rollbacks and kills shared by the bucket's concurrency tests on every store.

Publishes carry small fake model bytes (the bucket never parses them), so a
run takes seconds; :func:`check_invariants` states what must hold after any
mix of publishes, rollbacks and crashes.
"""

from __future__ import annotations

import collections
import datetime
import os
import random
import threading
import time
import uuid
from unittest import mock

from bucket import history as bucket_history
from bucket import layout, publish, storage, verify
from bucket import versions as bucket_versions

MODEL = "shelf_audit"
PER_PUBLISHER = 10


def payload(tag: str, unique: bool = True) -> tuple[dict[str, bytes], dict]:
    data = f"model {tag} {uuid.uuid4().hex if unique else ''}".encode()
    manifest = publish.build_manifest(
        model_name=MODEL,
        default_variant="fp16",
        variants={"fp16": {"file": "model.tflite", "bytes": len(data), "latency_ms": 0.1}},
        labels=["ok", "misplaced", "damaged"],
        gate_metrics={"overall": {"weighted_recall": 0.9}},
        lineage={"pipeline_run_id": tag},
        image_shape=(8, 8, 1),
    )
    return {"model.tflite": data, "labels.txt": b"ok\nmisplaced\ndamaged\n"}, manifest


def publish_one(bucket: str, tag: str, now: datetime.datetime | None = None) -> str:
    """Publish one fresh fake model; its version."""
    files, manifest = payload(tag)
    result = publish.publish(bucket, MODEL, files, manifest, now=now)
    assert result.created
    return result.version


def minutes_ago(minutes: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)


def publisher(bucket: str, tag: str, count: int, start: float) -> list[str]:
    """Publish ``count`` versions as fast as possible (a process or a thread), from ``start`` (epoch seconds) on."""
    time.sleep(max(0.0, start - time.time()))
    return [publish_one(bucket, f"{tag}-{i}") for i in range(count)]


def rollbacker(bucket: str, count: int, start: float, deadline: float) -> list[str]:
    """Roll back ``count`` times to a random older complete version while the publishers run."""
    time.sleep(max(0.0, start - time.time()))
    rng = random.Random(os.getpid() ^ threading.get_ident())
    targets: list[str] = []
    while len(targets) < count and time.time() < deadline:
        versions = bucket_versions.list_versions(bucket, MODEL)
        if len(versions) < 2:
            time.sleep(0.02)
            continue
        target = rng.choice(versions[:-1])
        publish.rollback(bucket, MODEL, target, reason="race test")
        targets.append(target)
        time.sleep(rng.uniform(0.0, 0.05))
    return targets


def check_invariants(bucket: str, published: list[str]) -> str:
    """Every publish has exactly one event; LATEST is what the log says, complete, and not moved back; LATEST."""
    history = bucket_history.read_history(bucket, MODEL)
    events = collections.Counter(e["version"] for e in history if e["action"] == "publish")
    assert sorted(events) == sorted(published), "a publish without its event, or an event without a publish"
    assert set(events.values()) == {1}, f"duplicate publish events: {events.most_common(3)}"
    latest = bucket_versions.read_latest(bucket, MODEL)
    assert latest == bucket_history.latest_from_events(history)
    assert bucket_versions.is_complete(bucket, MODEL, latest)
    assert verify.verify_version(bucket, MODEL, latest, run_models=False).ok
    # The rule, stated from the last rollback on: LATEST is the newest version published after it that is newer
    # than every version published before it; with none, the rollback's target.
    rollbacks = [i for i, e in enumerate(history) if e["action"] == "rollback"]
    last = rollbacks[-1] if rollbacks else -1
    before = [e["version"] for e in history[: max(last, 0)] if e["action"] == "publish"]
    after = [e["version"] for e in history[last + 1 :] if e["action"] == "publish"]
    newer = [v for v in after if not before or v > max(before)]
    if newer:
        assert latest == max(newer)
    else:
        assert rollbacks and latest == history[last]["version"]
    if not rollbacks:
        assert latest == max(published)
    return latest


def leftovers(bucket: str) -> list[str]:
    root = layout.model_root(bucket, MODEL)
    found = [n for n in storage.listdir(root) if layout.TMP_MARK in n]
    found += [n for n in storage.listdir(layout.join(root, layout.HISTORY_DIR)) if layout.TMP_MARK in n]
    staging = layout.join(root, layout.STAGING_DIR)
    if storage.isdir(staging):
        found += storage.listdir(staging)
    return found


class Killed(BaseException):
    """A kill: not an Exception, so no ``except Exception`` cleanup of publish runs (as with SIGKILL)."""


def killed_at(step: str):
    def hook(name: str) -> None:
        if name == step:
            raise Killed(step)

    return mock.patch.object(publish, "_step", side_effect=hook)


STEPS = ["staged", "copied", "manifest", "event", "latest"]


# A child that publishes the "killed" model and SIGKILLs itself right after the given step.
KILLER = """
import os, signal, sys
from bucket import publish
from support import bucket_race as t

def hook(name):
    if name == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

publish._step = hook
files, manifest = t.payload("killed", unique=False)
publish.publish(sys.argv[1], t.MODEL, files, manifest)
"""
