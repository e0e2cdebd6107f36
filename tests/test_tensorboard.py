"""TensorBoard: the summary names the Trainer's log folder with a runnable command; the venv's tensorboard starts.

The logs of real runs are read back with TensorBoard's own loader in tests/test_report_e2e.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2


def _summary(stages):
    from pipeline import run_summary

    return run_summary.RunSummary(
        run_id="r1",
        stages=stages,
        blessed=True,
        gate=[],
        worst_slices=[],
        failures=[],
        evaluation_uri="/home/pipeline_root/Evaluator/evaluation/12",
        pushed=None,
    )


def _stage(node_id, state, outputs):
    from pipeline import run_summary

    return run_summary.Stage(node_id, state, 1.0, outputs)


@pytest.mark.unit
def test_summary_prints_the_tensorboard_command_for_the_trainers_model_run():
    from pipeline import run_summary

    model_run = metadata_store_pb2.Artifact(id=9, uri="/h o/pipeline_root/Trainer/model_run/9")
    model = metadata_store_pb2.Artifact(id=8, uri="/h o/pipeline_root/Trainer/model/9")
    summary = _summary(
        [
            _stage("Transform", "CACHED", {"transform_graph": [metadata_store_pb2.Artifact(id=5, uri="/t")]}),
            # A cached Trainer still names its artifacts: the logs of the run that trained the model.
            _stage("Trainer", "CACHED", {"model": [model], "model_run": [model_run]}),
        ]
    )
    assert run_summary.tensorboard_logdir(summary) == "/h o/pipeline_root/Trainer/model_run/9/logs"
    line = next(x for x in run_summary.format_summary(summary).splitlines() if x.startswith("tensorboard: "))
    argv = shlex.split(line.removeprefix("tensorboard: "))
    assert argv[1:] == ["--logdir", "/h o/pipeline_root/Trainer/model_run/9/logs"]
    # The tensorboard beside this interpreter (the venv's), which the next test starts.
    assert argv[0] == os.path.join(os.path.dirname(sys.executable), "tensorboard")


@pytest.mark.unit
def test_no_tensorboard_line_without_a_trainer():
    from pipeline import run_summary

    summary = _summary([_stage("ImportExampleGen", "COMPLETE", {})])
    assert run_summary.tensorboard_logdir(summary) is None
    assert "tensorboard:" not in run_summary.format_summary(summary)


@pytest.mark.component
def test_the_venvs_tensorboard_starts_without_the_pkg_resources_error():
    exe = Path(sys.executable).parent / "tensorboard"
    assert exe.exists(), f"{exe} missing: the lock installs tensorboard with tensorflow"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "ModuleNotFoundError" not in proc.stderr, proc.stderr[-3000:]
    import tensorboard

    assert proc.stdout.strip().splitlines()[0] == tensorboard.__version__
