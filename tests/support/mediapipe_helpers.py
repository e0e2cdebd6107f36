"""Run scripts/tasks_classify.py in the MediaPipe environment (``.venv-mediapipe``) from a test.

MediaPipe cannot be installed next to the pipeline (protobuf 3 vs 4): it has an
environment of its own (``make .venv-mediapipe``, from requirements-mediapipe.lock).
``SHELF_AUDIT_MEDIAPIPE_PYTHON`` points at another interpreter that has mediapipe.
A missing interpreter fails the test that needs it: it is never skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "tasks_classify.py"
MEDIAPIPE_PYTHON_ENV = "SHELF_AUDIT_MEDIAPIPE_PYTHON"


def mediapipe_python() -> str:
    """The MediaPipe environment's interpreter; fails the test (never skips) when there is none."""
    configured = os.environ.get(MEDIAPIPE_PYTHON_ENV)
    path = Path(configured) if configured else REPO / ".venv-mediapipe" / "bin" / "python"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"no MediaPipe interpreter at {path}: run `make .venv-mediapipe` (builds it from "
            f"requirements-mediapipe.lock), or set {MEDIAPIPE_PYTHON_ENV} to a Python that has mediapipe",
            pytrace=False,
        )
    return str(path)


def classify(model: Path | str, images: list[str], cwd: Path | str, metadata: bool = False) -> list[dict]:
    """MediaPipe Tasks' ImageClassifier on ``images``: one dict per line the script printed (metadata first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    argv = [mediapipe_python(), str(SCRIPT), *(["--metadata"] if metadata else []), str(model), *images]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"tasks_classify.py exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(images) + (1 if metadata else 0), proc.stdout
    return lines
