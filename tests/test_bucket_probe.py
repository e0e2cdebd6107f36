"""``shelf-audit run`` probes the model bucket before any stage runs: a bad bucket fails in seconds, named."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import tiny

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[1]


def test_run_with_an_unwritable_bucket_fails_before_any_stage(tmp_path):
    data = tmp_path / "data" / "span-1"
    data.mkdir(parents=True)
    (data / "part-0.tfrecord.gz").write_bytes(b"")  # a span is present: the run gets as far as the bucket
    home = tmp_path / "home"
    args = ["run", "--config", REPO / "configs" / "demo.toml", "--home", home, "--data", tmp_path / "data"]
    started = time.monotonic()
    proc = tiny.run_cli(*args, "--bucket", "/proc/nope", "--epochs", "1", cwd=REPO, timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "bucket /proc/nope is not writable" in proc.stderr
    assert "Component " not in proc.stderr  # no stage started
    assert not (home / "pipeline_root").exists()
    assert elapsed < 60  # the probe comes before TFX is even imported; training would take minutes
