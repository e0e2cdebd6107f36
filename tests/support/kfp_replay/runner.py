"""How a container task's command is executed: the one seam between the replay and the "image".

:class:`~support.kfp_replay.replay.Replay` decides *what* runs (the command and
arguments as the spec writes them, the environment, the task's scratch folder)
and hands it to a :class:`TaskRunner`, which decides *how*. :class:`VenvRunner`
runs it as a subprocess of this machine in a clean virtualenv standing in for
the image: the venv's ``bin`` first on ``PATH`` (so ``python`` is the image's
python), from the task's scratch working directory, with a minimal environment
(no ``PYTHONPATH``, nothing from the caller's shell). A runner that starts a
real container runs the same command with the image and the ``mounts`` mounted
at the same paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from .image_venv import image_base_env


class TaskRunner(Protocol):
    """Runs a container task's command where the image's programs are."""

    @property
    def python(self) -> Path:
        """The interpreter ``python`` names in the image."""
        ...

    def base_env(self, home: Path) -> dict[str, str]:
        """What a container starts with (the image's ``PATH``, ``HOME`` and ``TMPDIR`` under ``home``, a locale)."""
        ...

    def which(self, program: str, env: Mapping[str, str]) -> str | None:
        """The executable ``program`` resolves to in the image with ``env``, None when it has none."""
        ...

    def run(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        workdir: Path,
        *,
        stdout: IO[str],
        stderr: IO[str],
        timeout: float,
        mounts: Sequence[Path] = (),
    ) -> subprocess.CompletedProcess:
        """Run ``command`` with exactly ``env`` from ``workdir``, its output written to ``stdout``/``stderr``.

        ``mounts`` are the host folders the replay gives the task (its task folders, HOME and
        TMPDIR, the pipeline root), which a container must see at the same paths; a runner adds
        any others its tasks read (the data root, the bucket). Raises
        ``subprocess.TimeoutExpired`` when the command runs longer than ``timeout`` seconds.
        """
        ...


class VenvRunner:
    """A subprocess of this machine in a clean virtualenv standing in for the image."""

    def __init__(self, python: str | os.PathLike):
        self._python = Path(python)

    @property
    def python(self) -> Path:
        """The venv's python; its ``bin`` goes first on ``PATH``."""
        return self._python

    def base_env(self, home: Path) -> dict[str, str]:
        """:func:`~support.kfp_replay.image_venv.image_base_env` of this venv."""
        return image_base_env(self._python, home)

    def which(self, program: str, env: Mapping[str, str]) -> str | None:
        """``program`` looked up on ``env``'s ``PATH``."""
        return shutil.which(program, path=env["PATH"])

    def run(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        workdir: Path,
        *,
        stdout: IO[str],
        stderr: IO[str],
        timeout: float,
        mounts: Sequence[Path] = (),
    ) -> subprocess.CompletedProcess:
        """``command`` as a subprocess (no stdin); this machine sees ``mounts`` already."""
        return subprocess.run(
            list(command),
            cwd=workdir,
            env=dict(env),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
