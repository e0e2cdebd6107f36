"""Build the project's image once per content, and run commands in it, for the tests that need it.

:func:`ensure_image` tags the image ``shelf-audit-test:<sha12>``, the digest of what goes into it:
``requirements.lock``, the ``Dockerfile``, the wheel's files (names and CRCs, so a rebuilt wheel of
the same code gives the same tag), the base and the Beam boot image. It builds only when that tag is
absent, through the project's own entry points: ``make wheel``, ``make base-image`` (when no
``BASE_IMAGE`` is given: the Debian 12 + CPython 3.10 base from Debian's mirrors) and ``make image``.
A machine without a Docker engine fails the test that needs one; it is never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_REPOSITORY = "shelf-audit-test"


def _make(*args: str, timeout: float = 3600) -> None:
    """``make ARGS`` in the repository; fails the test with make's output when it fails."""
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"make {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}",
            pytrace=False,
        )


def project_base_image() -> str:
    """The tag ``make base-image`` builds (the Makefile's ``BASE_IMAGE_TAG``)."""
    match = re.search(r"^BASE_IMAGE_TAG := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "the Makefile defines no BASE_IMAGE_TAG"
    return match.group(1)


def content_tag(base_image: str, beam_boot_image: str = "") -> str:
    """``shelf-audit-test:<sha12>`` of the lock, the Dockerfile, the wheel in dist/, the base and the boot."""
    digest = hashlib.sha256()
    for name in ("requirements.lock", "Dockerfile"):
        digest.update((REPO / name).read_bytes())
    (wheel,) = sorted((REPO / "dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(f"{info.filename}:{info.CRC}\n".encode())
    digest.update(f"base={base_image}\nboot={beam_boot_image}\n".encode())
    return f"{TEST_REPOSITORY}:{digest.hexdigest()[:12]}"


def image_exists(name: str) -> bool:
    """Whether the Docker engine has an image of that name."""
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


def ensure_image(base_image: str | None = None, beam_boot_image: str = "") -> str:
    """The name of the project's image for the current checkout, built when no image has that content.

    ``base_image`` defaults to ``$BASE_IMAGE``, else the project's base (built by ``make base-image``).
    One process at a time builds (a file lock next to the checkout): ``make wheel`` empties ``dist/``,
    which another test worker's build may be reading.
    """
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("the Docker engine does not answer (docker info): make test-services starts it", pytrace=False)
    lock_path = (
        Path(tempfile.gettempdir()) / f"shelf-audit-image-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(base_image, beam_boot_image)


def _build(base_image: str | None, beam_boot_image: str) -> str:
    _make("wheel")
    base = base_image or os.environ.get("BASE_IMAGE") or project_base_image()
    tag = content_tag(base, beam_boot_image)
    if image_exists(tag):
        return tag
    if base == project_base_image():
        _make("base-image")
    _make("image", f"IMAGE={tag}", f"BASE_IMAGE={base}", f"BEAM_BOOT_IMAGE={beam_boot_image}")
    return tag


def docker_run(
    image: str, *command: str, stdin: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``docker run --rm [-i] IMAGE COMMAND...`` with its output captured as text."""
    flags = ["-i"] if stdin is not None else []
    return subprocess.run(
        ["docker", "run", "--rm", *flags, image, *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
