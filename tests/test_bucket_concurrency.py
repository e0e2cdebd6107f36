"""The bucket under concurrency and crashes: concurrent publishers and rollbacks, and a publish killed at each step.

Publishes here carry small fake model bytes (the bucket never parses them), so the tests take seconds and, on
local folders and fsspec's ``memory://``, never import TensorFlow.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent import futures
from pathlib import Path
from unittest import mock

import pytest
from support.bucket_race import (
    KILLER,
    MODEL,
    PER_PUBLISHER,
    STEPS,
    Killed,
    check_invariants,
    killed_at,
    leftovers,
    minutes_ago,
    payload,
    publish_one,
    publisher,
    rollbacker,
)

from bucket import history as bucket_history
from bucket import publish, storage
from bucket import versions as bucket_versions

pytestmark = pytest.mark.component


@pytest.mark.parametrize("with_rollbacks", [False, True], ids=["two-publishers", "two-publishers-and-rollbacks"])
def test_concurrent_processes_on_a_local_folder(tmp_path, with_rollbacks):
    bucket = str(tmp_path / "bucket")
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 4.0  # every child imported and waiting: the publishes really overlap
    with ctx.Pool(3 if with_rollbacks else 2) as pool:
        jobs = [pool.apply_async(publisher, (bucket, tag, PER_PUBLISHER, start)) for tag in ("p1", "p2")]
        rolls = pool.apply_async(rollbacker, (bucket, 5, start, start + 60)) if with_rollbacks else None
        by_publisher = [job.get(timeout=120) for job in jobs]
        rolled = rolls.get(timeout=120) if rolls else []
    published = [v for versions in by_publisher for v in versions]
    assert len(published) == 2 * PER_PUBLISHER == len(set(published))
    # The two publishers really overlapped: their events interleave in the log.
    owner = {v: i for i, versions in enumerate(by_publisher) for v in versions}
    order = [owner[e["version"]] for e in bucket_history.read_history(bucket, MODEL) if e["action"] == "publish"]
    assert sum(a != b for a, b in zip(order, order[1:], strict=False)) >= 2, f"no overlap: {order}"
    assert len(rolled) == (5 if with_rollbacks else 0)
    check_invariants(bucket, published)
    assert leftovers(bucket) == []
    assert [e["action"] for e in bucket_history.read_history(bucket, MODEL)].count("rollback") == len(rolled)


def test_concurrent_threads_on_memory():
    # memory:// lives in one process's memory: threads share it, processes would not.
    bucket = f"memory://race-{uuid.uuid4().hex}"
    start = time.time() + 0.2
    with futures.ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(publisher, bucket, tag, PER_PUBLISHER, start) for tag in ("t1", "t2")]
        rolls = pool.submit(rollbacker, bucket, 5, start, start + 60)
        published = [v for job in jobs for v in job.result(timeout=120)]
        rolled = rolls.result(timeout=120)
    assert len(published) == 2 * PER_PUBLISHER and len(rolled) == 5
    check_invariants(bucket, published)


def test_a_slower_publish_of_an_older_build_does_not_move_latest_back(tmp_path):
    bucket = str(tmp_path / "bucket")
    now = datetime.datetime.now(datetime.timezone.utc)
    newer = publish_one(bucket, "newer", now=now)
    older = publish_one(bucket, "older", now=now - datetime.timedelta(minutes=5))  # built first, finished last
    assert older < newer and bucket_versions.read_latest(bucket, MODEL) == newer
    check_invariants(bucket, [newer, older])


@pytest.mark.parametrize("step", STEPS)
def test_a_publish_killed_at_each_step_is_finished_by_a_rerun(tmp_path, step):
    bucket = str(tmp_path / "bucket")
    first = publish_one(bucket, "first", now=minutes_ago(2))  # versions of one second sort by fingerprint
    files, manifest = payload("second")
    with killed_at(step), mock.patch.object(storage, "remove_quietly"), pytest.raises(Killed):
        publish.publish(bucket, MODEL, files, manifest)
    # Until LATEST moved, apps still get the first version, complete.
    moved = STEPS.index(step) >= STEPS.index("latest")
    latest = bucket_versions.read_latest(bucket, MODEL)
    assert bucket_versions.is_complete(bucket, MODEL, latest) and (latest != first) == moved
    if STEPS.index(step) < STEPS.index("manifest"):
        assert bucket_versions.list_versions(bucket, MODEL) == [first]  # a partial folder is not a version

    again = publish.publish(bucket, MODEL, files, manifest)  # the re-run of the same model
    assert bucket_versions.read_latest(bucket, MODEL) == again.version != first
    if STEPS.index(step) >= STEPS.index("manifest"):
        assert not again.created  # the complete version was finished, not published twice
    if step == "manifest":
        assert again.message.startswith("finished the interrupted publish")
    check_invariants(bucket, [first, again.version])
    # Leftovers of the kill are cleaned once older than the grace period (0 here); nothing else is touched.
    publish.clean(bucket, MODEL, grace_seconds=0)
    assert leftovers(bucket) == []
    assert (
        bucket_versions.list_versions(bucket, MODEL)
        == bucket_versions.version_folders(bucket, MODEL)
        == sorted([first, again.version])
    )
    check_invariants(bucket, [first, again.version])


@pytest.mark.parametrize("step", ["manifest", "event"])
def test_a_rollback_after_a_killed_publish_survives_the_rerun(tmp_path, step):
    bucket = str(tmp_path / "bucket")
    first = publish_one(bucket, "first", now=minutes_ago(3))
    second = publish_one(bucket, "second", now=minutes_ago(2))
    files, manifest = payload("third")
    with killed_at(step), pytest.raises(Killed):
        publish.publish(bucket, MODEL, files, manifest)
    time.sleep(0.01)
    publish.rollback(bucket, MODEL, first, reason="field reports")  # on purpose, after the crash
    again = publish.publish(bucket, MODEL, files, manifest)
    assert not again.created and bucket_versions.read_latest(bucket, MODEL) == first
    check_invariants(bucket, [first, second, again.version])


def test_clean_keeps_young_leftovers_and_removes_old_ones(tmp_path):
    bucket = str(tmp_path / "bucket")
    publish_one(bucket, "first")
    root = tmp_path / "bucket" / MODEL
    old, young = int(time.time()) - 7200, int(time.time())
    (root / ".staging" / f"20261125T000000Z-abcdef-{old}-0a0b0c").mkdir(parents=True)
    (root / ".staging" / f"20261125T000000Z-abcdef-{young}-0d0e0f").mkdir(parents=True)
    (root / f"LATEST.tmp-{old}-deadbeef").write_text("x")
    (root / f"LATEST.tmp-{young}-deadbeef").write_text("x")
    legacy = root / "LATEST.tmp-0badf00d"  # the old naming, aged by its mtime
    legacy.write_text("x")
    os.utime(legacy, (old, old))
    partial = root / "versions" / "20200101T000000Z-123456"  # a killed publish's folder, no manifest
    partial.mkdir()
    (partial / "model.tflite").write_bytes(b"x")
    os.utime(partial / "model.tflite", (old, old))
    os.utime(partial, (old, old))
    removed = sorted(os.path.basename(p) for p in publish.clean(bucket, MODEL))
    assert removed == sorted(
        [f"20261125T000000Z-abcdef-{old}-0a0b0c", f"LATEST.tmp-{old}-deadbeef", "LATEST.tmp-0badf00d", partial.name]
    )
    assert sorted(p.name for p in (root / ".staging").iterdir()) == [f"20261125T000000Z-abcdef-{young}-0d0e0f"]
    assert (root / f"LATEST.tmp-{young}-deadbeef").exists()


def test_a_stale_latest_write_is_corrected_by_the_writer_that_made_it(tmp_path):
    """Writer X lists the log, then Y records a newer publish and settles, then X writes its stale LATEST."""
    bucket = str(tmp_path / "bucket")
    first = publish_one(bucket, "first", now=minutes_ago(2))
    real_write = storage.atomic_write
    newer: list[str] = []
    started: list[bool] = []

    def write(path: str, data: bytes) -> None:
        if path.endswith("/LATEST") and not started:
            started.append(True)
            newer.append(publish_one(bucket, "newer"))  # Y, complete, between X's listing and X's write
        real_write(path, data)

    with mock.patch.object(storage, "atomic_write", side_effect=write):
        publish.rollback(bucket, MODEL, first, reason="X")  # X: its first LATEST write is f(log without Y's event)
    # Y's publish came after X's rollback event in the log: Y wins, although X wrote last.
    assert bucket_versions.read_latest(bucket, MODEL) == newer[0]
    check_invariants(bucket, [first, newer[0]])


@pytest.mark.parametrize("step", STEPS)
def test_a_publish_process_killed_with_sigkill_is_finished_by_a_rerun(tmp_path, step):
    bucket = str(tmp_path / "bucket")
    first = publish_one(bucket, "first", now=minutes_ago(2))
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests)]))
    proc = subprocess.run([sys.executable, "-c", KILLER, bucket, step], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    latest = bucket_versions.read_latest(bucket, MODEL)
    assert bucket_versions.is_complete(bucket, MODEL, latest) and (latest == first) == (step != "latest")
    files, manifest = payload("killed", unique=False)
    again = publish.publish(bucket, MODEL, files, manifest)
    assert bucket_versions.read_latest(bucket, MODEL) == again.version != first
    check_invariants(bucket, [first, again.version])
