"""Image tier: the Kubeflow/Dataflow image, built with Docker from the Dockerfile, checked from inside.

The image is built once per content (``image_helpers.ensure_image``: on the project's own Debian 12
base unless ``BASE_IMAGE`` names another). In it, every native object of ``/opt/venv`` resolves:
real ``ldd`` finds each library, or the environment ships it where the loader finds it at run time
(``scripts/native_libs.py ldd``), and the ELF reader finds every ``DT_NEEDED`` in the environment or
the image's own library folders. No compiler is left in it, the libraries a run loads import and
the set-up check passes. The Beam boot is copied in only when ``BEAM_BOOT_IMAGE`` names an image.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from support import image_helpers

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[1]
NATIVE_LIBS = (REPO / "scripts" / "native_libs.py").read_text()
FAKE_BOOT = "shelf-audit-test-boot:fake"


@pytest.fixture(scope="module")
def image() -> str:
    """The project's image for this checkout, built when absent."""
    return image_helpers.ensure_image()


def _output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"


def test_ldd_finds_every_library_of_the_venv(image):
    result = image_helpers.docker_run(image, "python", "-", "ldd", "/opt/venv", stdin=NATIVE_LIBS)
    assert result.returncode == 0, _output(result)
    lines = result.stdout.splitlines()
    objects = int(lines[0].split("ldd on ")[1].split()[0])
    assert objects > 500 and lines[0].endswith(", 0 missing libraries"), result.stdout
    # What ldd alone cannot find is in a folder of the venv the loader searches in the running process.
    for line in lines[2:]:
        assert (
            line.strip().startswith("lib/python3.10/site-packages/")
            and " (the DT_RPATH of " in line
            or ("tensorflow_io_gcs_filesystem" in line and "in lib/python3.10/site-packages/tensorflow/" in line)
        ), line


def test_every_needed_library_is_in_the_venv_or_the_image(image):
    result = image_helpers.docker_run(image, "python", "-", "check", "--system", "/opt/venv", stdin=NATIVE_LIBS)
    assert result.returncode == 0, _output(result)
    assert result.stdout.rstrip().endswith(", 0 missing libraries"), result.stdout


def test_no_compiler_in_the_image(image):
    result = image_helpers.docker_run(image, "sh", "-c", "command -v gcc g++ cc c++ uv")
    assert result.returncode != 0 and result.stdout == "", _output(result)


def test_the_libraries_a_run_loads_import_and_the_setup_check_passes(image):
    imports = "import tfx, tensorflow_transform, tensorflow_model_analysis, ai_edge_litert, shelf_audit.preflight"
    result = image_helpers.docker_run(image, "python", "-c", imports)
    assert result.returncode == 0, _output(result)
    result = image_helpers.docker_run(image, "python", "-m", "shelf_audit.preflight")
    assert result.returncode == 0, _output(result)
    assert "set-up check" in result.stdout + result.stderr
    result = image_helpers.docker_run(image, "shelf-audit", "--help")
    assert result.returncode == 0 and "usage: shelf-audit" in result.stdout, _output(result)


def test_the_image_runs_the_venv_with_the_project_settings(image):
    result = image_helpers.docker_run(
        image,
        "python",
        "-c",
        "import os, sys; print(sys.prefix, os.environ['TF_USE_LEGACY_KERAS'], os.environ['PYTHONUNBUFFERED'])",
    )
    assert result.stdout.split() == ["/opt/venv", "1", "1"], _output(result)
    inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True)
    config = json.loads(inspect.stdout)[0]["Config"]
    assert not config["Entrypoint"], "no BEAM_BOOT_IMAGE: no Beam boot entrypoint"
    assert image_helpers.docker_run(image, "test", "-e", "/opt/apache/beam").returncode == 1


def _fake_boot_image() -> str:
    """A local image holding only ``/opt/apache/beam/boot`` (a shell script naming itself), as Beam's has."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        script = b'#!/bin/sh\necho "fake beam boot: $*"\n'
        for folder in ("opt", "opt/apache", "opt/apache/beam"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        info = tarfile.TarInfo("opt/apache/beam/boot")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))
    subprocess.run(["docker", "import", "-", FAKE_BOOT], input=buffer.getvalue(), capture_output=True, check=True)
    return FAKE_BOOT


def test_beam_boot_image_gives_the_boot_entrypoint(image):
    base = json.loads(
        subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True).stdout
    )[0]
    booted = image_helpers.ensure_image(beam_boot_image=_fake_boot_image())
    config = json.loads(
        subprocess.run(["docker", "image", "inspect", booted], capture_output=True, text=True, check=True).stdout
    )[0]["Config"]
    assert config["Entrypoint"] == ["/opt/apache/beam/boot"]
    result = image_helpers.docker_run(booted, "--worker_pool")
    assert result.stdout.strip() == "fake beam boot: --worker_pool", _output(result)
    # The boot adds one layer on top of the same image.
    assert config["Env"] == base["Config"]["Env"]
