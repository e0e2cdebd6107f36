"""Pipeline tier: a span window and drift in a tiny end-to-end local run, through the real ``shelf-audit run``.

Span 1 is ordinary synthetic photos; span 2 was all taken with one scanner.
``--spans last:2`` trains on both, the summary and the manifest say so and
report the device drift (reported only: ``drift.stop_on_drift`` is false);
the same data with ``stop_on_drift = true`` stops before Transform with the
feature, the measure and the threshold named.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
from pathlib import Path

import pytest
from support import tiny
from support.span_helpers import count_records

from bucket import versions
from shelf_data import synth
from shelf_data.contract import ShardedWriter

pytestmark = pytest.mark.e2e

COUNTS = {1: 120, 2: 100}
_explain = functools.partial(tiny.explain, stdout_tail=4000)


def _run(tmp: Path, stop: bool, *flags: str) -> subprocess.CompletedProcess:
    config = tiny.write_tiny_config(tmp / f"tiny-stop-{stop}.toml", "tiny-spans", {"drift.stop_on_drift": stop})
    return tiny.run_cli("run", "--config", config, "--data", tmp / "data", "--home", tmp / "home", *flags)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two spans; a run over both (drift reported), then the same with stop_on_drift (stopped)."""
    tmp = tmp_path_factory.mktemp("e2e-spans")
    synth.generate(str(tmp / "data"), span=1, count=COUNTS[1], seed=21)
    with ShardedWriter(str(tmp / "data"), 2, 2) as writer:
        for photo in synth.iter_photos(COUNTS[2], seed=22, span=2):
            writer.write(dataclasses.replace(photo, device_id="zebra-tc52"))
    results = {"tmp": tmp}
    results["window"] = _run(tmp, False, "--spans", "last:2")
    results["window_summary"] = tiny.summary(tmp / "home", "tiny-spans")
    # --force: whatever the inputs digest finds in the bucket, this run must reach SpanDrift.
    results["stopped"] = _run(tmp, True, "--spans", "last:2", "--force")
    results["stopped_summary"] = tiny.summary(tmp / "home", "tiny-spans")
    results["bucket"] = versions.list_versions(str(tmp / "home" / "bucket"), "shelf_audit")
    return results


def test_a_window_of_two_spans_trains_on_both_and_says_so(runs):
    proc, summary = runs["window"], runs["window_summary"]
    assert proc.returncode == 0, _explain(proc)
    assert summary.spans == [1, 2]
    [examples] = summary.examples
    assert examples["span"] == 2 and examples["spans"] == [1, 2]
    assert count_records(examples["uri"]) == COUNTS[1] + COUNTS[2]
    assert "trained and evaluated on spans 1-2" in proc.stdout
    assert "spans 1-2: ImportExampleGen examples artifact" in proc.stdout


def test_device_drift_is_reported_in_the_summary_and_the_manifest(runs):
    proc, summary = runs["window"], runs["window_summary"]
    assert summary.drift is not None and summary.drift["previous_span"] == 1 and summary.drift["current_span"] == 2
    assert "drift: span 2 vs span 1:" in proc.stdout and "(reported only)" in proc.stdout, _explain(proc)
    assert "DRIFT device_id: infinity_norm" in proc.stdout
    bucket = str(runs["tmp"] / "home" / "bucket")
    manifest = versions.read_manifest(bucket, "shelf_audit")
    block = manifest["drift"]
    assert block["drifted"] is True and (block["current_span"], block["previous_span"]) == (2, 1)
    device = next(c for c in block["checks"] if c["name"] == "device_id")
    assert device["measure"] == "infinity_norm" and device["drifted"] and device["value"] > 0.5


def test_stop_on_drift_stops_before_transform_naming_the_drift(runs):
    proc, summary = runs["stopped"], runs["stopped_summary"]
    assert proc.returncode == 1, _explain(proc)
    assert "span 2 drifted from span 1 and drift.stop_on_drift is true" in proc.stderr, _explain(proc)
    assert "device_id: infinity_norm" in proc.stderr and "> threshold 0.1000" in proc.stderr
    assert summary.stage("SpanDrift").state == "FAILED"
    assert summary.stage("Transform") is None and summary.stage("TFLitePusher") is None
    assert len(runs["bucket"]) == 1  # only the first run's version
