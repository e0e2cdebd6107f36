"""Component tier: what `shelf-audit compile` hands to Kubeflow Pipelines.

The replay in ``test_kfp_replay.py`` proves the spec runs; these tests pin
down its shape cheaply: a package the kfp SDK loads, runtime parameters with
the config's defaults, nothing of the compiling machine, the project's image
and pod sizes on every task.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from components import schema_importer
from components import trainer as trainer_component
from pipeline import config as config_lib
from pipeline import kubeflow_runner
from shelf_audit import cli

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = REPO / "configs" / "production.toml"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, str, str]:
    """``(spec, stdout, stderr)`` of `shelf-audit compile` on the production config with gs:// paths."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(
            ["compile", "--config", str(PRODUCTION), "--pipeline-root", "gs://ml/pipelines", "--out", str(out)]
        )
    assert status == 0, stderr.getvalue()
    return yaml.safe_load(out.read_text()), stdout.getvalue(), stderr.getvalue()


def test_the_kfp_sdk_loads_the_package_with_its_runtime_parameters(compiled, tmp_path):
    from kfp import components

    spec, _, _ = compiled
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = components.load_component_from_file(str(path))
    production = config_lib.load(PRODUCTION)
    defaults = {name: value.default for name, value in loaded.component_spec.inputs.items()}
    assert defaults == {
        "input_base": production.data.input_base,
        "range_config": "",  # the latest span
        "bucket": production.push.bucket,
        "epochs": production.training.epochs,
    }
    assert spec["schemaVersion"] == "2.1.0"
    assert spec["defaultPipelineRoot"] == "gs://ml/pipelines"


def test_runtime_parameters_reach_the_tasks_that_use_them(compiled):
    tasks = compiled[0]["root"]["dag"]["tasks"]

    def source(task: str, parameter: str) -> str | None:
        return tasks[task]["inputs"]["parameters"][parameter].get("componentInputParameter")

    assert source("ImportExampleGen", "input_base") == "input_base"
    assert source("ImportExampleGen", "range_config") == "range_config"
    assert source("Trainer", "epochs") == "epochs"
    assert source("TFLitePusher", "bucket") == "bucket"


def test_nothing_of_the_compiling_machine_is_in_the_spec(compiled):
    text = json.dumps(compiled[0])
    for local in {str(REPO), os.path.expanduser("~"), os.getcwd()}:
        assert local not in text, f"{local} leaked into the spec"
    schema = compiled[0]["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    assert schema["runtimeValue"]["constant"].startswith("package://schemas/schema.pbtxt#sha256=")


def test_every_task_runs_the_project_image_with_its_pod_size(compiled):
    spec, _, _ = compiled
    production = config_lib.load(PRODUCTION)
    containers = {
        label.removesuffix("_executor"): executor["container"]
        for label, executor in spec["deploymentSpec"]["executors"].items()
        if "container" in executor
    }
    assert {c["image"] for c in containers.values()} == {production.kubeflow.image}
    k = production.kubeflow
    assert containers["Trainer"]["resources"]["cpuLimit"] == k.trainer_cpu
    assert containers["Trainer"]["resources"]["memoryLimit"] == k.trainer_memory_gb
    assert containers["Evaluator"]["resources"]["memoryRequest"] == k.evaluator_memory_gb
    assert containers["StatisticsGen"]["resources"] == {
        "cpuLimit": k.cpu,
        "cpuRequest": k.cpu,
        "memoryLimit": k.memory_gb,
        "memoryRequest": k.memory_gb,
    }
    assert all("accelerator" not in c["resources"] for c in containers.values())


def test_compile_warns_about_placeholders_and_says_what_it_wrote(compiled):
    _, stdout, stderr = compiled
    assert "YOUR_PROJECT" in stderr and "replace it in" in stderr
    assert "runtime parameters (defaults): bucket=" in stdout
    assert "epochs=5" in stdout


def test_an_optional_gpu_goes_to_the_trainer_only(tmp_path):
    config = config_lib.load(PRODUCTION)
    config = config.replace(
        kubeflow=dataclasses.replace(config.kubeflow, trainer_gpu_type="NVIDIA_TESLA_T4", trainer_gpu_count=1)
    )
    spec = kubeflow_runner.compile_spec(config, "gs://ml/root", image="registry.example/shelf-audit:1")
    executors = spec["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"]["container"]["resources"]["accelerator"] == {
        "type": "NVIDIA_TESLA_T4",
        "count": "1",
    }
    assert executors["Trainer_executor"]["container"]["image"] == "registry.example/shelf-audit:1"
    assert "accelerator" not in executors["Evaluator_executor"]["container"]["resources"]


def test_secrets_reach_every_task_as_environment_variables_from_kubernetes(tmp_path):
    text = PRODUCTION.read_text().replace("[push]\n", '[push]\nsigning_key = "env:SHELF_AUDIT_SIGNING_PEM"\n', 1)
    text += (
        "\n[kubeflow.secrets]\n"
        'SHELF_AUDIT_SIGNING_PEM = "shelf-audit-signing/key.pem"\n'
        'SHELF_AUDIT_MYSQL_PASSWORD = "shelf-audit-mysql/password"\n'
    )
    config_file, out = tmp_path / "secrets.toml", tmp_path / "pipeline.yaml"
    config_file.write_text(text)
    status = cli.main(["compile", "--config", str(config_file), "--pipeline-root", "gs://ml/root", "--out", str(out)])
    assert status == 0
    spec, platform = yaml.safe_load_all(out.read_text())
    containers = {label for label, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == containers and "TFLitePusher_executor" in containers
    assert executors["TFLitePusher_executor"]["secretAsEnv"] == [
        {
            "secretName": "shelf-audit-mysql",
            "keyToEnv": [{"secretKey": "password", "envVar": "SHELF_AUDIT_MYSQL_PASSWORD"}],
        },
        {
            "secretName": "shelf-audit-signing",
            "keyToEnv": [{"secretKey": "key.pem", "envVar": "SHELF_AUDIT_SIGNING_PEM"}],
        },
    ]
    # The pusher names the variable, never a key: the spec holds no literal secret.
    pusher = spec["root"]["dag"]["tasks"]["TFLitePusher"]["inputs"]["parameters"]
    assert pusher["signing_key"]["runtimeValue"]["constant"] == "env:SHELF_AUDIT_SIGNING_PEM"
    # A JSON package cannot carry them: said, not dropped.
    config = config_lib.load(config_file)
    with pytest.raises(ValueError, match="kubeflow.secrets need a YAML spec"):
        kubeflow_runner.write_spec(spec, str(tmp_path / "p.json"), kubeflow_runner.platform_spec(config, spec))
    for bad in ({"SHELF-KEY": "s/k"}, {"KEY": "no-key"}, {"KEY": "Upper/k"}):
        with pytest.raises(config_lib.ConfigError, match="kubeflow.secrets"):
            config_lib.from_dict({"kubeflow": {"secrets": bad}})


def test_compile_needs_an_image():
    config = config_lib.load(PRODUCTION)
    config = config.replace(kubeflow=dataclasses.replace(config.kubeflow, image=""))
    with pytest.raises(ValueError, match="kubeflow.image"):
        kubeflow_runner.compile_spec(config, "gs://ml/root")


def test_compile_writes_json_when_asked(tmp_path):
    config = config_lib.load(PRODUCTION)
    spec = kubeflow_runner.compile_spec(config, "gs://ml/root")
    kubeflow_runner.write_spec(spec, str(tmp_path / "pipeline.json"))
    assert json.loads((tmp_path / "pipeline.json").read_text()) == spec


# --- The pieces that make the spec portable -----------------------------------------


def test_packaged_schema_resolves_to_the_installed_file_and_checks_its_digest():
    uri = schema_importer.package_schema_uri("schemas", "schema.pbtxt")
    path = schema_importer.resolve_schema_uri(uri)
    assert Path(path).name == "schema.pbtxt" and Path(path).is_file()
    stale = uri.split("#sha256=")[0] + "#sha256=" + "0" * 64
    with pytest.raises(ValueError, match="build the image from the same revision"):
        schema_importer.resolve_schema_uri(stale)
    with pytest.raises(ValueError, match="not installed"):
        schema_importer.resolve_schema_uri("package://no_such_package/schema.pbtxt")
    assert schema_importer.resolve_schema_uri("gs://bucket/schema.pbtxt") == "gs://bucket/schema.pbtxt"


def test_trainer_epochs_override_the_custom_config():
    props = {"custom_config": json.dumps({"training": {"epochs": 15, "batch_size": 32}}), "epochs": 3.0}
    merged = trainer_component.with_epochs(props)
    assert "epochs" not in merged
    assert json.loads(merged["custom_config"]) == {"training": {"epochs": 3, "batch_size": 32}}
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        trainer_component.with_epochs({"custom_config": "{}", "epochs": 0})
