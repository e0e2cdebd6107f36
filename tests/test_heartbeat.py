"""The stage heartbeat: elapsed time for a running stage, nothing once it finished."""

from __future__ import annotations

import logging
import time

import pytest

from shelf_audit.heartbeat import StageHeartbeat

pytestmark = pytest.mark.unit


def test_beats_for_running_stages_only(caplog):
    now = [100.0]
    heartbeat = StageHeartbeat(clock=lambda: now[0])
    absl = logging.getLogger("test-absl")
    absl.addHandler(heartbeat)
    try:
        absl.warning("Component Evaluator is running.")
        now[0] += 95
        with caplog.at_level(logging.INFO, logger="shelf_audit.run"):
            assert heartbeat.beat() == ["Evaluator still running, 1:35 elapsed"]
        assert "Evaluator still running, 1:35 elapsed" in caplog.text
        absl.warning("Component Evaluator is finished.")
        assert heartbeat.beat() == []
    finally:
        absl.removeHandler(heartbeat)


def test_thread_logs_while_a_stage_runs(caplog):
    absl = logging.getLogger("test-absl-thread")
    absl.setLevel(logging.INFO)
    heartbeat = StageHeartbeat(every=0.05).start(absl)
    try:
        with caplog.at_level(logging.INFO, logger="shelf_audit.run"):
            absl.info("Component Transform is running.")
            time.sleep(0.3)
            absl.info("Component Transform is finished.")
            seen = caplog.text.count("Transform still running")
            time.sleep(0.2)
        assert seen >= 2
        assert caplog.text.count("Transform still running") == seen  # silent once finished
    finally:
        heartbeat.stop(absl)
