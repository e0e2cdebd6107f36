"""The tiny pipeline runs of the end-to-end tiers: their config and ``shelf-audit`` in a subprocess.

:func:`tiny_toml` is the config every tiny run starts from (one epoch of two
steps of eight photos, a gate every model passes, a loose latency budget),
with each test's own settings written over it; :func:`run_cli` runs
``python -m shelf_audit.cli ...`` as a user would, in the environment a
user's shell has for the project.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Trains in seconds and blesses whatever it trains: the tests are about the wiring, not the model.
TINY: dict[str, Any] = {
    "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
    "gate": {"weighted_recall_floor": 0.0, "class_recall_floors": {"damaged": 0.0}},
    "push": {"latency_budget_ms": 50.0},
}
# What `shelf-audit` needs in its environment (the Makefile exports the same).
CLI_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tiny_config(name: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The tiny config as a dict: pipeline ``name`` and :data:`TINY`, then ``settings``.

    Each key of ``settings`` is a dotted path (``"gate.max_drop"``, ``"beam_args"``)
    whose value replaces whatever the tiny config has there, a table included.
    """
    config: dict[str, Any] = {"name": name, **copy.deepcopy(TINY)}
    for path, value in (settings or {}).items():
        *tables, key = path.split(".")
        table = config
        for part in tables:
            table = table.setdefault(part, {})
        table[key] = copy.deepcopy(value)
    return config


def _toml_lines(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    # JSON's strings, numbers, booleans, lists and empty objects are TOML values too; a table
    # with keys gets a [header] after the plain keys of its parent.
    tables = {key: value for key, value in table.items() if isinstance(value, Mapping) and value}
    yield from (f"{key} = {json.dumps(value)}" for key, value in table.items() if key not in tables)
    for key, value in tables.items():
        yield f"[{prefix}{key}]"
        yield from _toml_lines(value, f"{prefix}{key}.")


def tiny_toml(name: str, settings: Mapping[str, Any] | None = None) -> str:
    """:func:`tiny_config` as the text of a TOML file."""
    return "\n".join(_toml_lines(tiny_config(name, settings))) + "\n"


def write_tiny_config(path: Path, name: str, settings: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`tiny_toml` to ``path`` and return the path."""
    path.write_text(tiny_toml(name, settings))
    return path


def cli_env(unset: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment with :data:`CLI_ENV` and ``extra``, less the variables named in ``unset``."""
    env = {**os.environ, **CLI_ENV, **extra}
    for name in unset:
        env.pop(name, None)
    return env


def run_cli(
    *args: str | os.PathLike,
    timeout: float = 1200,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> subprocess.CompletedProcess:
    """``python -m shelf_audit.cli ARGS`` in a subprocess (this interpreter), its output captured as text.

    The child gets :func:`cli_env` with ``env`` added and ``unset`` removed; it runs in
    ``cwd`` (default: this process's working directory) and is killed after ``timeout`` seconds.
    """
    return subprocess.run(
        [sys.executable, "-m", "shelf_audit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(unset, **(env or {})),
        cwd=cwd,
        timeout=timeout,
    )


def explain(proc: subprocess.CompletedProcess, stdout_tail: int = 3000, stderr_tail: int = 5000) -> str:
    """A finished command's exit status and the tails of its output, for an assertion's message."""
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-stdout_tail:]}\nstderr:\n{proc.stderr[-stderr_tail:]}"


def summary(home: Path, name: str) -> Any:
    """The ``run_summary.RunSummary`` of pipeline ``name``'s latest run in ``home``'s SQLite ML Metadata."""
    from tfx import v1 as tfx

    from pipeline import run_summary
    from pipeline.eval_config import build_eval_config

    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(home / "metadata.sqlite"))
    return run_summary.summarize(
        connection, name, build_eval_config({"ok": 1, "misplaced": 1, "damaged": 2}, 0, {}, None)
    )
