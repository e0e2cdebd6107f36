"""The image: a wheel and a clean virtualenv standing in for the container image.

The clean "image" venv is built by :func:`build_wheel` + :func:`make_image_venv`
(hashed lock + the project wheel and nothing else); :func:`cached_image` caches
both once per pytest session, also under pytest-xdist (:func:`shared`).
:func:`image_base_env` is what a container of the image starts with.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import pickle
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import STDERR_TAIL_LINES, ReplayError

REPO_ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")

log = logging.getLogger("kfp_replay")


def find_uv() -> str:
    local = REPO_ROOT / ".venv" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        raise ReplayError("uv not found: run `make env` (it installs uv into .venv)")
    return found


def _tool_env() -> dict[str, str]:
    # No activated venv, PYTHONPATH or conda leaking into the tools.
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "UV_PYTHON"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _check_run(cmd: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_tool_env(), **kwargs)
    log.info("%s: %s (%.1fs, exit %d)", what, " ".join(str(c) for c in cmd), time.monotonic() - start, proc.returncode)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-STDERR_TAIL_LINES:])
        raise ReplayError(f"{what} failed with exit code {proc.returncode}: {' '.join(map(str, cmd))}\n{tail}")
    return proc


def _project_files(project_dir: Path) -> list[str]:
    """Files a build context holds: tracked and untracked-but-not-ignored files that exist."""
    try:
        out = subprocess.run(
            ["git", "-C", str(project_dir), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "__pycache__", "data", "runs"}
        names = []
        for dirpath, dirnames, filenames in os.walk(project_dir):
            dirnames[:] = [d for d in dirnames if d not in skip and not d.endswith(".egg-info")]
            names += [os.path.relpath(os.path.join(dirpath, f), project_dir) for f in filenames]
    return sorted(n for n in names if (project_dir / n).is_file())


def build_wheel(out_dir: str | os.PathLike, project_dir: str | os.PathLike = REPO_ROOT) -> Path:
    """Build the project's wheel into ``out_dir`` and return its path.

    The sources are copied to a scratch folder first (git's view: tracked and
    untracked-not-ignored files), so the build neither sees ``.venv``/``data``
    nor leaves ``build/`` or ``*.egg-info`` in the project.
    """
    project_dir, out_dir = Path(project_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    with tempfile.TemporaryDirectory(prefix="wheel-src-") as src:
        for name in _project_files(project_dir):
            target = Path(src) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project_dir / name, target)
        build = [
            find_uv(),
            "build",
            "--quiet",
            "--wheel",
            "--no-python-downloads",
            "--python",
            find_python310(project_dir),
            "--out-dir",
            out_dir,
        ]
        _check_run([*build, src], "build wheel")
    new = sorted(set(out_dir.glob("*.whl")) - before) or sorted(out_dir.glob("*.whl"))
    if len(new) != 1:
        raise ReplayError(f"expected one wheel in {out_dir}, found {[p.name for p in new]}")
    return new[0]


def find_python310(project_dir: str | os.PathLike = REPO_ROOT) -> str:
    """The interpreter ``scripts/find_python310.sh`` picks (the image's Python)."""
    return _check_run([Path(project_dir) / "scripts" / "find_python310.sh"], "find python3.10").stdout.strip()


def make_image_venv(
    wheel: str | os.PathLike, venv_dir: str | os.PathLike, project_dir: str | os.PathLike = REPO_ROOT
) -> Path:
    """A virtualenv holding exactly what the image holds: the hashed lock and the wheel. Returns its python."""
    wheel, venv_dir, project_dir = Path(wheel), Path(venv_dir), Path(project_dir)
    uv = find_uv()
    python310 = find_python310(project_dir)
    _check_run([uv, "venv", "--quiet", "--no-python-downloads", "--python", python310, venv_dir], "create venv")
    python = venv_dir / "bin" / "python"
    lock = project_dir / "requirements.lock"
    _check_run([uv, "pip", "sync", "--quiet", "--require-hashes", "--python", python, lock], "sync lock")
    _check_run([uv, "pip", "install", "--quiet", "--no-deps", "--python", python, wheel], "install wheel")
    # The wheel's packages must come from the venv, not from wherever this ran.
    with zipfile.ZipFile(wheel) as zf:
        tops = sorted(
            {n.split("/")[0] for n in zf.namelist() if "/" in n and ".dist-info" not in n and n.endswith(".py")}
        )
    probe = (
        "import importlib, json, sys; print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))"
    )
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [str(python), "-c", probe, *tops], capture_output=True, text=True, cwd=cwd, env=image_base_env(python)
        )
    if proc.returncode != 0:
        raise ReplayError(f"the image venv cannot import the wheel's packages {tops}:\n{proc.stderr[-3000:]}")
    for module, path in json.loads(proc.stdout).items():
        if not Path(path).resolve().is_relative_to(venv_dir.resolve()):
            raise ReplayError(f"{module} imports from {path}, outside the image venv {venv_dir}")
    return python


@dataclasses.dataclass(frozen=True)
class Image:
    """The stand-in image: the wheel it was built from and its python."""

    wheel: Path
    python: Path
    seconds: float


def shared(tmp_path_factory: Any, key: str, build: Callable[[Path], T]) -> T:
    """``build(folder)`` once per pytest session, also across pytest-xdist workers.

    The first caller builds under a file lock in the session's base temp folder
    (its parent under xdist, which every worker shares) and pickles the result;
    the others wait and unpickle it. A failure is replayed to the others as a
    :class:`ReplayError` with the same message.
    """
    base = Path(tmp_path_factory.getbasetemp())
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / key
    with open(base / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done, failed = base / f"{key}.pickle", base / f"{key}.error"
        if done.exists():
            return pickle.loads(done.read_bytes())
        if failed.exists():
            raise ReplayError(f"{key} failed in another worker:\n{failed.read_text()}")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            value = build(folder)
        except BaseException as error:
            failed.write_text(f"{type(error).__name__}: {error}")
            raise
        done.write_bytes(pickle.dumps(value))
        return value


def cached_image(tmp_path_factory: Any, project_dir: str | os.PathLike = REPO_ROOT) -> Image:
    """The wheel and the image venv, built once per pytest session (see :func:`shared`)."""

    def build(root: Path) -> Image:
        start = time.monotonic()
        wheel = build_wheel(root / "wheel", project_dir)
        python = make_image_venv(wheel, root / "venv", project_dir)
        image = Image(wheel, python, round(time.monotonic() - start, 1))
        log.info("image venv ready in %.1fs: %s", image.seconds, python)
        return image

    return shared(tmp_path_factory, "kfp-image", build)


def image_base_env(python: Path, home: Path | None = None) -> dict[str, str]:
    """What a container starts with: the image's PATH, a HOME, a locale. Nothing from the caller's shell."""
    env = {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    if home is not None:
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home / "tmp")
    return env
