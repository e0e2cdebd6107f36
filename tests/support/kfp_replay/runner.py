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
import uuid
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


class DockerRunner:
    """``docker run`` of the real image: what the task's pod would run, with no network.

    The command replaces the image's entrypoint (as Kubernetes does with a container's
    ``command``), runs from ``workdir`` with exactly ``env``, and sees the replay's folders
    and ``extra_mounts`` (the data root, the bucket) at the same paths as on this machine.
    """

    # The image's interpreter and PATH (the Dockerfile's /opt/venv).
    PYTHON = Path("/opt/venv/bin/python")
    PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def __init__(self, image: str, extra_mounts: Sequence[str | os.PathLike] = ()):
        self.image = image
        self.extra_mounts = [Path(m) for m in extra_mounts]
        self._which: dict[str, str | None] = {}

    @property
    def python(self) -> Path:
        """The image's python."""
        return self.PYTHON

    def base_env(self, home: Path) -> dict[str, str]:
        """The image's PATH, a HOME and TMPDIR under ``home`` (mounted), a locale."""
        return {
            "PATH": self.PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
        }

    def which(self, program: str, env: Mapping[str, str]) -> str | None:
        """``command -v program`` inside the image with ``env``'s PATH (asked once per program)."""
        if program not in self._which:
            proc = subprocess.run(
                ["docker", "run", "--rm", "--network", "none", "--env", f"PATH={env['PATH']}", "--entrypoint", "sh"]
                + [self.image, "-c", 'command -v "$0"', program],
                capture_output=True,
                text=True,
                timeout=120,
            )
            self._which[program] = proc.stdout.strip() or None if proc.returncode == 0 else None
        return self._which[program]

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
        """``docker run --rm`` of ``command`` in the image; killed (exit -9 as a timeout) after ``timeout``."""
        name = f"kfp-replay-{uuid.uuid4().hex[:12]}"
        args = ["docker", "run", "--rm", "--name", name, "--network", "none", "--workdir", str(workdir)]
        for folder in dict.fromkeys([*mounts, *self.extra_mounts]):
            Path(folder).mkdir(parents=True, exist_ok=True)
            args += ["--volume", f"{folder}:{folder}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += ["--entrypoint", command[0], self.image, *command[1:]]
        try:
            return subprocess.run(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["docker", "kill", name], capture_output=True, check=False)
            raise
