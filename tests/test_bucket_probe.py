"""``shelf-audit run`` probes the model bucket before any stage runs: a bad bucket fails in seconds, named."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")


def test_run_with_an_unwritable_bucket_fails_before_any_stage(tmp_path):
    data = tmp_path / "data" / "span-1"
    data.mkdir(parents=True)
    (data / "part-0.tfrecord.gz").write_bytes(b"")  # a span is present: the run gets as far as the bucket
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "shelf_audit.cli", "run", "--config", str(REPO / "configs" / "demo.toml")]
    cmd += ["--home", str(home), "--data", str(tmp_path / "data"), "--bucket", "/proc/nope", "--epochs", "1"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "bucket /proc/nope is not writable" in proc.stderr
    assert "Component " not in proc.stderr  # no stage started
    assert not (home / "pipeline_root").exists()
    assert elapsed < 60  # the probe comes before TFX is even imported; training would take minutes
