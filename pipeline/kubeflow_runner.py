"""Compile the same DAG for Kubeflow Pipelines: a KFP V2 pipeline spec with runtime parameters.

The spec is what ``kfp.Client().upload_pipeline`` and Vertex
``PipelineJob(template_path=...)`` take. Every task runs the project's own
image (which holds this package and the hashed lock); the data root, the
span selection, the bucket and the number of epochs are runtime parameters
whose defaults come from the config, so one compiled spec serves every run
and environment.
"""

from __future__ import annotations

import re
from typing import Any

from tfx import v1 as tfx
from tfx.orchestration import data_types

from components.example_gen import driver as example_gen_driver
from pipeline import config as config_lib
from pipeline.pipeline import RunInputs, create_pipeline, range_config_json

# Runtime parameter names, as a run or a recurring run sets them.
INPUT_BASE, RANGE_CONFIG, BUCKET, EPOCHS = "input_base", "range_config", "bucket", "epochs"
# Values in a shipped config that a user must replace before a real run.
PLACEHOLDER = re.compile(r"YOUR_[A-Z_]+")
# Where the spec runs: Vertex AI Pipelines runs TFX's resolver tasks and ExampleGen's
# driver hook; open-source Kubeflow Pipelines runs neither (see for_open_source_kfp).
VERTEX, KFP = "vertex", "kfp"
BACKENDS = (VERTEX, KFP)
# Tasks that get the config's larger pods.
_TRAINER, _EVALUATOR = "Trainer", "Evaluator"


def runtime_inputs(config: config_lib.PipelineConfig) -> RunInputs:
    """Runtime parameters for the run inputs, with the config's values as defaults."""
    return RunInputs(
        input_base=data_types.RuntimeParameter(name=INPUT_BASE, ptype=str, default=config.data.input_base),
        range_config=data_types.RuntimeParameter(name=RANGE_CONFIG, ptype=str, default=range_config_json(config.data)),
        bucket=data_types.RuntimeParameter(name=BUCKET, ptype=str, default=config.push.bucket),
        epochs=data_types.RuntimeParameter(name=EPOCHS, ptype=int, default=config.training.epochs),
    )


def _resources(config: config_lib.KubeflowConfig, task: str) -> dict[str, Any]:
    cpu, memory = config.cpu, config.memory_gb
    if task == _TRAINER:
        cpu, memory = config.trainer_cpu, config.trainer_memory_gb
    elif task == _EVALUATOR:
        cpu, memory = config.evaluator_cpu, config.evaluator_memory_gb
    spec: dict[str, Any] = {"cpuRequest": cpu, "cpuLimit": cpu, "memoryRequest": memory, "memoryLimit": memory}
    if task == _TRAINER and config.trainer_gpu_count:
        spec["accelerator"] = {"type": config.trainer_gpu_type, "count": str(config.trainer_gpu_count)}
    return spec


def compile_spec(
    config: config_lib.PipelineConfig, pipeline_root: str, image: str | None = None, backend: str = VERTEX
) -> dict[str, Any]:
    """The KFP V2 pipeline spec (IR) of the DAG, as a dict.

    Args:
        config: validated pipeline configuration; ``config.kubeflow`` gives the image and pod sizes.
        pipeline_root: where the cluster writes artifacts (``gs://...``); the spec's default root.
        image: container image for every task (default ``config.kubeflow.image``).
        backend: ``vertex`` (the whole DAG) or ``kfp`` (open-source Kubeflow Pipelines: see
            :func:`for_open_source_kfp`).

    Raises:
        ValueError: no image is given here or in the config, or an unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}. Received backend={backend!r}")
    image = image or config.kubeflow.image
    if not image:
        raise ValueError("no container image: set kubeflow.image in the config or pass --image")
    inputs = runtime_inputs(config)
    dag = create_pipeline(config, pipeline_root=pipeline_root, inputs=inputs)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        ),
    )
    job = runner.run(dag, write_out=False)
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = pipeline_root
    # TFX leaves the defaults out of the spec (they would go in a job envelope);
    # a pipeline package must carry them itself, in root.inputDefinitions.
    declared = spec["root"]["inputDefinitions"]["parameters"]
    for parameter in inputs.values():
        declared[parameter.name]["defaultValue"] = parameter.default
    for executor_label, executor in spec["deploymentSpec"]["executors"].items():
        if "container" in executor:
            task = executor_label.removesuffix("_executor")
            executor["container"]["resources"] = _resources(config.kubeflow, task)
    use_span_window_driver(spec)
    return for_open_source_kfp(spec) if backend == KFP else spec


def platform_spec(config: config_lib.PipelineConfig, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The Kubernetes platform spec that hands every task ``kubeflow.secrets``; None when there are none.

    It is the second document of the pipeline package (``secretAsEnv`` per executor, as the
    ``kfp-kubernetes`` extension writes it); open-source Kubeflow Pipelines reads it, Vertex AI does not.
    """
    secrets: dict[str, list[dict[str, str]]] = {}
    for variable, source in sorted(config.kubeflow.secrets.items()):
        name, key = source.split("/", 1)
        secrets.setdefault(name, []).append({"secretKey": key, "envVar": variable})
    if not secrets:
        return None
    as_env = [{"secretName": name, "keyToEnv": keys} for name, keys in sorted(secrets.items())]
    executors = {
        label: {"secretAsEnv": as_env}
        for label, executor in sorted(spec["deploymentSpec"]["executors"].items())
        if "container" in executor
    }
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def use_span_window_driver(spec: dict[str, Any]) -> dict[str, Any]:
    """Point ExampleGen's ``preCacheCheck`` at :mod:`components.example_gen.driver` (same flags); returns ``spec``.

    TFX's driver resolves one span only; ours resolves the ``range_config`` runtime
    parameter (latest, last K, a range) to the spans present, then runs TFX's.

    Raises:
        ValueError: no task runs TFX's ExampleGen driver (a TFX upgrade changed the hook).
    """
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    swapped = 0
    for executor in spec["deploymentSpec"]["executors"].values():
        hook = executor.get("container", {}).get("lifecycle", {}).get("preCacheCheck", {})
        if hook.get("command") == ["python", "-m", example_gen_driver.TFX_DRIVER_MODULE]:
            hook["command"] = ["python", "-m", example_gen_driver.DRIVER_MODULE]
            swapped += 1
    if not swapped:
        raise ValueError(f"no preCacheCheck runs {example_gen_driver.TFX_DRIVER_MODULE}: cannot set the span driver")
    return spec


def for_open_source_kfp(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without what open-source Kubeflow Pipelines' V2 backend cannot run; returns ``spec``, changed.

    Its compiler refuses TFX's resolver tasks ("resolver executors not
    implemented"), and its launcher never runs a container's
    ``lifecycle.preCacheCheck``. So the latest-blessed-model resolver goes
    (the Evaluator gates on the floors only, without the no-drop check
    against a baseline), and ExampleGen's span resolution happens in its
    executor instead of the hook.
    """
    dag, components = spec["root"]["dag"]["tasks"], spec["components"]
    executors = spec["deploymentSpec"]["executors"]
    resolvers = {
        name
        for name, task in dag.items()
        if "resolver" in executors[components[task["componentRef"]["name"]]["executorLabel"]]
    }
    for name in resolvers:
        component = dag.pop(name)["componentRef"]["name"]
        executors.pop(components.pop(component)["executorLabel"])
    for task in dag.values():
        artifacts = task.get("inputs", {}).get("artifacts", {})
        for key in [
            k for k, v in artifacts.items() if v.get("taskOutputArtifact", {}).get("producerTask") in resolvers
        ]:
            del artifacts[key]
            components[task["componentRef"]["name"]]["inputDefinitions"]["artifacts"].pop(key, None)
        if "dependentTasks" in task:
            task["dependentTasks"] = [t for t in task["dependentTasks"] if t not in resolvers]
    for executor in executors.values():
        executor.get("container", {}).pop("lifecycle", None)
    return spec


def placeholders(spec: dict[str, Any]) -> list[str]:
    """The ``YOUR_...`` placeholders left in a compiled spec, sorted and unique."""
    import json

    return sorted(set(PLACEHOLDER.findall(json.dumps(spec))))


def write_spec(spec: dict[str, Any], path: str, platform: dict[str, Any] | None = None) -> None:
    """Write the spec as YAML (``.yaml``/``.yml``) or JSON (``.json``), through ``tf.io.gfile``.

    A platform spec (:func:`platform_spec`) follows the pipeline spec as a second YAML document.

    Raises:
        ValueError: a platform spec for a ``.json`` file (a pipeline package holds it only as YAML).
    """
    import json

    import tensorflow as tf
    import yaml

    if path.endswith(".json"):
        if platform:
            raise ValueError(f"{path}: kubeflow.secrets need a YAML spec (.yaml), the format that carries them")
        text = json.dumps(spec, indent=2, sort_keys=True)
    else:
        text = yaml.safe_dump_all([spec, platform] if platform else [spec], sort_keys=True)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
