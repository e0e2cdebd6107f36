"""The replay's errors: every refusal and failure is a :class:`ReplayError`."""

from __future__ import annotations

from pathlib import Path

STDERR_TAIL_LINES = 60


class ReplayError(RuntimeError):
    """The replay cannot go on (bad spec, bad parameters, a task failed)."""


class UnsupportedSpec(ReplayError):
    """The spec uses a feature this stand-in does not implement."""


class TaskFailed(ReplayError):
    """A container task exited non-zero."""

    def __init__(self, task: str, returncode: int, stderr_tail: str, task_dir: Path, what: str = "task"):
        self.task, self.returncode, self.stderr_tail, self.task_dir = task, returncode, stderr_tail, task_dir
        super().__init__(
            f"{what} {task!r} failed with exit code {returncode} (stdout/stderr in {task_dir})\n"
            f"--- last {STDERR_TAIL_LINES} lines of stderr ---\n{stderr_tail}"
        )
