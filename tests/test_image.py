"""Kfp tier: the image recipe and the wheel it installs.

Checked here by what the image is made of: the Dockerfile installs the
hashed lock with ``--require-hashes`` and then only the project wheel
(``--no-deps``), and that wheel holds every module and data file a task of
the compiled spec loads. The replay in ``test_kfp_replay.py`` then runs the
spec in a venv built the same way; ``test_image_build.py`` (the ``image``
tier) builds the image itself and checks it from inside.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from support import kfp_replay

pytestmark = pytest.mark.kfp

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "shelf_audit",
    "shelf_data",
    "shelf_model",
    "shelf_tflite",
    "bucket",
    "report",
    "schemas",
    "pipeline",
    "components",
)


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    wheel = kfp_replay.build_wheel(tmp_path_factory.mktemp("wheel"))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _run_lines(dockerfile: str) -> list[str]:
    """RUN instructions with their continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line for line in joined.splitlines() if line.startswith("RUN ")]


def test_dockerfile_installs_the_lock_with_hashes_then_only_the_wheel():
    dockerfile = (REPO / "Dockerfile").read_text()
    runs = _run_lines(dockerfile)
    lock_installs = [r for r in runs if "requirements.lock" in r]
    assert lock_installs, "no RUN installs requirements.lock"
    assert all("--require-hashes" in r for r in lock_installs)
    wheel_installs = [r for r in runs if ".whl" in r]
    assert wheel_installs and all("--no-deps" in r for r in wheel_installs), "the wheel must not pull unpinned deps"
    assert runs.index(lock_installs[0]) < runs.index(wheel_installs[0])
    assert re.search(r"^ARG BASE_IMAGE=python:3\.10", dockerfile, re.M), "TFX 1.16 needs Python 3.10"
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!requirements.lock", "!dist/*.whl"]


def test_every_locked_requirement_is_pinned_with_a_hash():
    text = re.sub(r"\\\n\s*", " ", (REPO / "requirements.lock").read_text())
    requirements = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    assert len(requirements) > 100
    for line in requirements:
        assert "==" in line and "--hash=sha256:" in line, line


def _modules_the_spec_loads(spec: dict) -> set[str]:
    modules = set()
    for executor in spec["deploymentSpec"]["executors"].values():
        args = executor.get("container", {}).get("args", [])
        if "--executor_class_path" in args:
            modules.add(args[args.index("--executor_class_path") + 1].rsplit(".", 1)[0])
    for task in spec["root"]["dag"]["tasks"].values():
        for name, value in task.get("inputs", {}).get("parameters", {}).items():
            constant = value.get("runtimeValue", {}).get("constant")
            if name in ("run_fn", "preprocessing_fn"):
                modules.add(constant.rsplit(".", 1)[0])
            if name == "eval_config":
                modules.update(
                    m["module"] for s in json.loads(constant)["metrics_specs"] for m in s["metrics"] if "module" in m
                )
    return modules


def test_the_wheel_holds_every_module_and_file_the_tasks_load(wheel_files):
    from pipeline import config as config_lib
    from pipeline import kubeflow_runner

    spec = kubeflow_runner.compile_spec(config_lib.load(REPO / "configs" / "production.toml"), "gs://ml/root")
    ours = {m for m in _modules_the_spec_loads(spec) if m.split(".")[0] in PACKAGES}
    # The stock executors come from the lock; these are the project's own.
    assert {"shelf_model.trainer", "shelf_model.preprocessing", "pipeline.metrics", "components.data_gate"} <= ours
    for module in ours:
        path = module.replace(".", "/")
        assert f"{path}.py" in wheel_files or f"{path}/__init__.py" in wheel_files, f"{module} is not in the wheel"
    schema = spec["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    package, filename = schema["runtimeValue"]["constant"].removeprefix("package://").split("#")[0].split("/")
    assert f"{package}/{filename}" in wheel_files


def test_the_wheel_holds_every_source_file_of_the_packages(wheel_files):
    expected = {p.relative_to(REPO).as_posix() for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    assert expected <= wheel_files, sorted(expected - wheel_files)
