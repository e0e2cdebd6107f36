"""Unit tier: the lock on a ``shelf-audit run`` home (shelf_audit/home_lock.py and its use in run_cmd).

The overlapping run goes through the real CLI in a subprocess, against a
lock held by another process. Nothing here builds a pipeline: the runs name
a data dir that does not exist and, to stop in well under a second once past
the lock, an invalid ``--epochs 0`` (a run that got past the lock exits 1
with the config error instead of 75).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from support import tiny

from shelf_audit import cli, home_lock, run_cmd

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
# A child that holds the lock until its stdin closes; it prints its holder record once locked.
HOLDER = (
    "import json, sys\n"
    "from shelf_audit import home_lock\n"
    "lock = home_lock.acquire(sys.argv[1])\n"
    "print(json.dumps(lock.holder), flush=True)\n"
    "sys.stdin.read()\n"
)


def _cli_run(home: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    args = ["run", "--config", REPO / "configs" / "demo.toml", "--home", home, "--data", tmp_path / "no-such-data"]
    started = time.monotonic()
    proc = tiny.run_cli(*args, "--epochs", "0", cwd=REPO, timeout=300)
    return proc, time.monotonic() - started


@pytest.fixture
def held_by_child(tmp_path):
    """``(home, holder record, child)``: a child process holds the lock on a fresh home until the test ends."""
    home = tmp_path / "home"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=tiny.cli_env(),
        cwd=REPO,
    )
    try:
        holder = json.loads(child.stdout.readline())
        yield home, holder, child
    finally:
        child.stdin.close()
        child.wait(timeout=60)


def test_an_overlapping_run_exits_busy_at_once_naming_the_holder_and_leaves_the_home_alone(held_by_child, tmp_path):
    home, holder, child = held_by_child
    assert holder["pid"] == child.pid

    proc, seconds = _cli_run(home, tmp_path)

    assert proc.returncode == cli.EXIT_BUSY == 75, proc.stderr
    assert seconds < 30, f"the busy run took {seconds:.1f}s"
    assert str(home) in proc.stderr
    assert f"pid {child.pid}" in proc.stderr
    assert holder["started"] in proc.stderr
    assert "try again later" in proc.stderr
    assert sorted(p.name for p in home.iterdir()) == [home_lock.LOCK_NAME]  # no metadata.sqlite, no pipeline_root


def test_after_the_holder_ends_the_lock_is_free_and_the_next_run_gets_past_it(held_by_child, tmp_path):
    home, _, child = held_by_child
    child.stdin.close()
    child.wait(timeout=60)

    proc, _ = _cli_run(home, tmp_path)

    # past the lock: the run reaches its config check
    assert proc.returncode == cli.EXIT_ERROR, proc.stderr
    assert "training.epochs must be >= 1" in proc.stderr
    assert "in use by another run" not in proc.stderr
    with home_lock.acquire(home) as lock:  # and that run released it when it exited
        assert lock.held


def test_a_holder_killed_without_cleaning_up_leaves_no_stale_lock(held_by_child):
    home, _, child = held_by_child
    child.kill()
    child.wait(timeout=60)
    with home_lock.acquire(home) as lock:
        assert lock.holder["pid"] == os.getpid()


def test_the_lock_file_names_the_holder_while_held(tmp_path):
    with home_lock.acquire(tmp_path / "home") as lock:
        record = json.loads((tmp_path / "home" / home_lock.LOCK_NAME).read_text())
        assert record == lock.holder
        assert record["pid"] == os.getpid()
        assert record["host"] and record["started"]
    assert not lock.held


def test_a_second_acquire_fails_at_once_with_the_holder_in_the_message(tmp_path):
    with home_lock.acquire(tmp_path) as first:
        started = time.monotonic()
        with pytest.raises(home_lock.HomeBusy) as busy:
            home_lock.acquire(tmp_path)
        assert time.monotonic() - started < 1
        assert busy.value.holder == first.holder
        assert f"pid {os.getpid()}" in str(busy.value)
        assert str(tmp_path) in str(busy.value)
    with home_lock.acquire(tmp_path):  # released on leaving the block
        pass


def test_run_releases_the_lock_when_the_run_raises(tmp_path):
    args = argparse.Namespace(home=str(tmp_path / "home"))
    with mock.patch.object(run_cmd, "_run_locked", side_effect=RuntimeError("stage blew up")) as inner:
        with pytest.raises(RuntimeError, match="stage blew up"):
            run_cmd.run(args)
    inner.assert_called_once_with(args)
    with home_lock.acquire(tmp_path / "home") as lock:
        assert lock.held


def test_run_holds_the_lock_while_the_pipeline_runs_and_returns_its_status(tmp_path):
    home = tmp_path / "home"

    def inner(args):
        with pytest.raises(home_lock.HomeBusy):
            home_lock.acquire(home)
        return cli.EXIT_NOT_BLESSED

    with mock.patch.object(run_cmd, "_run_locked", side_effect=inner):
        assert run_cmd.run(argparse.Namespace(home=str(home))) == cli.EXIT_NOT_BLESSED
    with home_lock.acquire(home):
        pass


def test_a_home_that_cannot_be_created_is_an_error_naming_it(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with mock.patch.object(run_cmd, "_run_locked") as inner:
        status = run_cmd.run(argparse.Namespace(home=str(blocker / "home")))
    assert status == cli.EXIT_ERROR
    inner.assert_not_called()
    assert f"cannot lock the home {blocker / 'home'}" in capsys.readouterr().err
