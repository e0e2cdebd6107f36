"""The replay: a compiled KFP V2 pipeline spec run task by task, as the KFP V2 driver and launcher would.

The spec is the IR dict that ``kfp.Client().upload_pipeline`` takes (what TFX's
``KubeflowV2DagRunner`` writes under ``pipelineSpec``). :class:`Replay` walks
``root.dag.tasks`` in dependency order and does for each task what the KFP V2
driver and launcher do (kubeflow/pipelines ``backend/src/v2``):

* **container executors** run ``command + args`` exactly as the spec writes them,
  through a :class:`~support.kfp_replay.runner.TaskRunner` (by default a
  :class:`~support.kfp_replay.runner.VenvRunner`: a clean virtualenv standing in
  for the image, its ``bin`` first on ``PATH``, a scratch working directory, a
  minimal environment with no ``PYTHONPATH``). Placeholders are filled like
  ``launcher_v2.go`` ``compileCmdAndArgs``/``getPlaceholders``: ``{{$}}`` is the
  JSON of a ``pipeline_spec_pb2.ExecutorInput`` built like the driver's
  ``resolveInputs`` + ``provisionOutputs`` (``driver/resolve.go``,
  ``driver/driver.go``). After the task, the ``ExecutorOutput`` it wrote to
  ``outputs.outputFile`` is merged into its output artifacts
  (``mergeRuntimeArtifacts``: uri and metadata) before they are recorded and
  handed downstream.
* ``lifecycle.preCacheCheck`` (TFX's file-based ExampleGen driver) runs first
  with the same ExecutorInput; the parameter values and artifact metadata of the
  ExecutorOutput it writes are merged into the main executor's inputs. (Vertex AI
  Pipelines behaviour: the open-source backend never reads this field, see
  :func:`~support.kfp_replay.oss.kfp_oss_blockers`.)
* **resolver executors** (``outputArtifactQueries``) are answered from an
  :class:`~support.kfp_replay.artifacts.ArtifactStore` of every artifact the
  replay has produced. (Vertex AI Pipelines behaviour as well.)
* anything else (importers, nested DAGs, iterators, conditions, unknown
  placeholders) raises :class:`~support.kfp_replay.errors.UnsupportedSpec` naming it.

Caching is not emulated: every task runs. Container resources are ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .artifacts import ArtifactStore, schema_title
from .errors import STDERR_TAIL_LINES, ReplayError, TaskFailed, UnsupportedSpec
from .runner import TaskRunner, VenvRunner
from .values import (
    FILTER_INPUT_RE,
    PLACEHOLDER_RE,
    check_parameter_type,
    legacy_to_python,
    parameter_text_to_value,
    placeholder_text,
    python_to_legacy,
)

log = logging.getLogger("kfp_replay")


@dataclasses.dataclass
class TaskRecord:
    """What happened to one task of one run."""

    name: str
    kind: str  # "container" or "resolver"
    seconds: float = 0.0
    returncode: int | None = None
    command: list[str] | None = None
    task_dir: Path | None = None
    executor_input: dict[str, Any] | None = None
    executor_output: dict[str, Any] | None = None
    pre_cache_check: dict[str, Any] | None = None  # its command, exit code and ExecutorOutput
    resolved: dict[str, int | None] | None = None  # resolver: output key -> store id (None: nothing matched)

    @property
    def stdout(self) -> str:
        return (self.task_dir / "stdout.txt").read_text() if self.task_dir else ""

    @property
    def stderr(self) -> str:
        return (self.task_dir / "stderr.txt").read_text() if self.task_dir else ""


@dataclasses.dataclass
class RunResult:
    """One replayed run: its parameters, each task's record and output artifacts (as downstream saw them)."""

    run_id: str
    parameters: dict[str, Any]
    records: dict[str, TaskRecord]
    outputs: dict[str, dict[str, list[dict[str, Any]]]]
    output_parameters: dict[str, dict[str, Any]]
    seconds: float

    def artifact(self, task: str, key: str) -> dict[str, Any] | None:
        found = self.outputs.get(task, {}).get(key, [])
        return found[0] if found else None


class Replay:
    """Replays a compiled KFP V2 pipeline spec against a local pipeline root and a stand-in image.

    Args:
        spec: the IR pipeline spec dict.
        python: the image venv's python (its ``bin`` goes first on ``PATH``): short for
            ``runner=VenvRunner(python)``.
        runner: how each container task's command is executed (instead of ``python``).
        work_dir: scratch folder: task folders, the artifact store, the log.
        pipeline_root: replaces the spec's ``defaultPipelineRoot`` (default ``work_dir/pipeline_root``).
        env: extra environment of every container (the image's ``ENV``).
        forbidden_paths: refuse to run a task whose command or ExecutorInput names one of
            these (e.g. the compiling machine's checkout): a real container cannot see them.
        timeout: seconds per container.
        platform: the package's Kubernetes platform spec (its second YAML document): each
            executor's ``secretAsEnv`` entries become environment variables of its container.
        secrets: the values of the Kubernetes secrets, ``{(secret name, key): value}``; a secret
            the platform spec names and this lacks fails the task, as a missing secret does on a cluster.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        work_dir: str | os.PathLike,
        python: str | os.PathLike | None = None,
        runner: TaskRunner | None = None,
        pipeline_root: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        forbidden_paths: Iterable[str | os.PathLike] = (),
        timeout: float = 1800,
        platform: Mapping[str, Any] | None = None,
        secrets: Mapping[tuple[str, str], str] | None = None,
    ):
        if runner is None:
            if python is None:
                raise ValueError("give the replay the image venv's python or a runner")
            runner = VenvRunner(python)
        elif python is not None:
            raise ValueError("give the replay the image venv's python or a runner, not both")
        self.runner = runner
        self.spec = copy.deepcopy(dict(spec))
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline_root = str(pipeline_root or self.work_dir / "pipeline_root")
        self.extra_env = dict(env or {})
        self.forbidden = [str(p) for p in forbidden_paths]
        self.timeout = timeout
        kubernetes = ((platform or {}).get("platforms") or {}).get("kubernetes") or {}
        self.platform_executors = (kubernetes.get("deploymentSpec") or {}).get("executors") or {}
        self.secrets = dict(secrets or {})
        self.store = ArtifactStore(self.work_dir / "artifact_store.json")
        self.pipeline_name = self.spec["pipelineInfo"]["name"]
        self.runs: list[RunResult] = []
        self._log_file = self.work_dir / "replay.log"
        self._check_spec()

    @property
    def python(self) -> Path:
        """The image's python (what ``python`` in a task's command runs)."""
        return self.runner.python

    # -- spec checks and helpers

    def _check_spec(self) -> None:
        root = self.spec["root"]
        for key in root:
            if key not in ("dag", "inputDefinitions", "outputDefinitions"):
                raise UnsupportedSpec(f"root component field {key!r}")
        for name, task in self.tasks.items():
            for field in ("triggerPolicy", "iteratorPolicy", "parameterIterator", "artifactIterator"):
                if field in task:
                    raise UnsupportedSpec(f"task {name!r} uses {field}")
            component = self.component(name)
            if "dag" in component:
                raise UnsupportedSpec(f"task {name!r} is a nested DAG (component {task['componentRef']['name']!r})")
            self.executor_kind(name)

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.spec["root"]["dag"]["tasks"]

    def component(self, task: str) -> dict[str, Any]:
        ref = self.tasks[task]["componentRef"]["name"]
        if ref not in self.spec["components"]:
            raise ReplayError(f"task {task!r}: component {ref!r} not in spec.components")
        return self.spec["components"][ref]

    def executor(self, task: str) -> dict[str, Any]:
        label = self.component(task).get("executorLabel")
        executors = self.spec.get("deploymentSpec", {}).get("executors", {})
        if label not in executors:
            raise ReplayError(f"task {task!r}: executor {label!r} not in deploymentSpec.executors")
        return executors[label]

    def executor_kind(self, task: str) -> str:
        executor = self.executor(task)
        kinds = [k for k in executor if k in ("container", "resolver", "importer", "customJob")] or list(executor)
        if kinds[0] not in ("container", "resolver"):
            raise UnsupportedSpec(f"task {task!r}: executor kind {kinds[0]!r} is not supported by this replay")
        return kinds[0]

    def tasks_of_kind(self, kind: str) -> list[str]:
        return [t for t in self.order() if self.executor_kind(t) == kind]

    def _upstream(self, task: str) -> set[str]:
        spec = self.tasks[task]
        deps = set(spec.get("dependentTasks", []))
        inputs = spec.get("inputs", {})
        for artifact in inputs.get("artifacts", {}).values():
            if "taskOutputArtifact" in artifact:
                deps.add(artifact["taskOutputArtifact"]["producerTask"])
        for parameter in inputs.get("parameters", {}).values():
            if "taskOutputParameter" in parameter:
                deps.add(parameter["taskOutputParameter"]["producerTask"])
        unknown = deps - set(self.tasks)
        if unknown:
            raise ReplayError(f"task {task!r} depends on unknown tasks {sorted(unknown)}")
        return deps

    def order(self) -> list[str]:
        """Tasks in dependency order (``dependentTasks`` plus the producers of their inputs), ties by name."""
        pending = {t: self._upstream(t) for t in self.tasks}
        done: list[str] = []
        while pending:
            ready = sorted(t for t, deps in pending.items() if deps <= set(done))
            if not ready:
                raise ReplayError(f"dependency cycle among {sorted(pending)}")
            done.append(ready[0])
            del pending[ready[0]]
        return done

    def runtime_parameters(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The run's parameter values: the given ones (type-checked) and the defaults of the others.

        Like the API server (``template/v2_template.go``) and the Argo compiler (``argo.go``):
        unknown names and untyped or mistyped values are refused; a parameter with neither value
        nor default is an error unless optional.
        """
        values = dict(values or {})
        declared = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise ReplayError(f"runtime parameters {unknown} are not declared (declared: {sorted(declared)})")
        resolved: dict[str, Any] = {}
        for name, definition in declared.items():
            parameter_type = definition.get("parameterType")
            if name in values:
                if parameter_type is None:
                    raise ReplayError(f"runtime parameter {name!r} has no parameterType (legacy 'type' only)")
                if parameter_type == "STRING" and not isinstance(values[name], str):  # no conversion here
                    raise ReplayError(f"runtime parameter {name!r}: type mismatch: expect STRING, got {values[name]!r}")
                resolved[name] = check_parameter_type(f"runtime parameter {name!r}", values[name], parameter_type)
            elif "defaultValue" in definition:
                resolved[name] = definition["defaultValue"]
            elif definition.get("isOptional"):
                resolved[name] = None
            else:
                raise ReplayError(f"runtime parameter {name!r} has neither a value nor a default")
        return resolved

    # -- the run

    def run(self, parameters: Mapping[str, Any] | None = None, only: Sequence[str] | None = None) -> RunResult:
        """Replay one run; ``only`` replays just those tasks (their producers must be among them)."""
        start = time.monotonic()
        run_id = f"run-{len(self.runs) + 1}-{uuid.uuid4().hex[:6]}"
        values = self.runtime_parameters(parameters)
        order = self.order()
        if only is not None:
            unknown = sorted(set(only) - set(self.tasks))
            if unknown:
                raise ReplayError(f"unknown tasks {unknown}")
            order = [t for t in order if t in set(only)]
        result = RunResult(run_id, values, {}, {}, {}, 0.0)
        self._log(f"== {run_id} of {self.pipeline_name}: parameters {json.dumps(values, sort_keys=True)}")
        for task in order:
            missing = sorted(self._upstream(task) - set(result.records))
            if missing:
                raise ReplayError(f"task {task!r} needs {missing}, which this run did not replay")
            if self.executor_kind(task) == "resolver":
                self._run_resolver(task, result)
            else:
                self._run_container(task, result)
        result.seconds = round(time.monotonic() - start, 1)
        self._log(f"== {run_id} done in {result.seconds:.1f}s")
        self.runs.append(result)
        return result

    def _log(self, line: str) -> None:
        log.info("%s", line)
        with open(self._log_file, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    # -- inputs

    def _input_parameters(self, task: str, result: RunResult) -> tuple[dict[str, Any], dict[str, Any]]:
        """(parameterValues, deprecated parameters) of the task, like the driver's ``resolveInputParameter``."""
        component = self.component(task)
        definitions = component.get("inputDefinitions", {}).get("parameters", {})
        values: dict[str, Any] = {}
        legacy: dict[str, Any] = {}
        for name, spec in self.tasks[task].get("inputs", {}).get("parameters", {}).items():
            where = f"task {task!r} parameter {name!r}"
            if "componentInputParameter" in spec:
                source = spec["componentInputParameter"]
                if source not in result.parameters:
                    raise ReplayError(f"{where}: the pipeline has no input parameter {source!r}")
                value = result.parameters[source]
                if value is None:  # optional without default: the component resolves its own default
                    continue
            elif "runtimeValue" in spec:
                runtime = spec["runtimeValue"]
                if "constant" in runtime:
                    value = self._special_constant(runtime["constant"], task, result)
                elif "constantValue" in runtime:  # deprecated (schema 2.0.0); Vertex reads it, open-source KFP does not
                    legacy[name] = runtime["constantValue"]
                    value = legacy_to_python(runtime["constantValue"])
                else:
                    raise UnsupportedSpec(f"{where}: runtimeValue {sorted(runtime)}")
            elif "taskOutputParameter" in spec:
                producer = spec["taskOutputParameter"]["producerTask"]
                key = spec["taskOutputParameter"]["outputParameterKey"]
                try:
                    value = result.output_parameters[producer][key]
                except KeyError as e:
                    raise ReplayError(f"{where}: {producer!r} produced no output parameter {key!r}") from e
            else:
                raise UnsupportedSpec(f"{where}: input parameter spec {sorted(spec)}")
            definition = definitions.get(name, {})
            values[name] = check_parameter_type(where, value, definition.get("parameterType"))
            if "type" in definition and name not in legacy:  # a component declared with the deprecated types
                legacy[name] = python_to_legacy(value, definition["type"])
        # The launcher's addDefaultParams: component-level defaults for absent inputs.
        for name, definition in definitions.items():
            if name not in values and "defaultValue" in definition:
                values[name] = definition["defaultValue"]
        return values, legacy

    def _special_constant(self, value: Any, task: str, result: RunResult) -> Any:
        specials = {
            "{{$.pipeline_job_name}}": result.run_id,
            "{{$.pipeline_job_resource_name}}": result.run_id,
            "{{$.pipeline_job_uuid}}": result.run_id,
            "{{$.pipeline_task_name}}": task,
            "{{$.pipeline_task_uuid}}": f"{result.run_id}-{task}",
        }
        if isinstance(value, str):
            if value in specials:
                return specials[value]
            if "{{$" in value:
                raise UnsupportedSpec(f"task {task!r}: constant with placeholder {value!r}")
        return value

    def _input_artifacts(self, task: str, result: RunResult) -> dict[str, list[dict[str, Any]]]:
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for name, spec in self.tasks[task].get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in spec:
                raise UnsupportedSpec(f"task {task!r} input artifact {name!r}: {sorted(spec)}")
            producer = spec["taskOutputArtifact"]["producerTask"]
            key = spec["taskOutputArtifact"]["outputArtifactKey"]
            if key not in result.outputs.get(producer, {}):
                raise ReplayError(f"task {task!r} input {name!r}: {producer!r} has no output {key!r}")
            artifacts[name] = copy.deepcopy(result.outputs[producer][key])
        return artifacts

    # -- resolver tasks

    def _run_resolver(self, task: str, result: RunResult) -> None:
        start = time.monotonic()
        inputs = self._input_artifacts(task, result)
        queries = self.executor(task)["resolver"].get("outputArtifactQueries", {})
        outputs: dict[str, list[dict[str, Any]]] = {}
        resolved: dict[str, int | None] = {}
        for key, query in queries.items():
            text = query.get("filter", "")
            filled = self._fill_filter(text, inputs)
            found = self.store.query(self.pipeline_name, filled) if filled is not None else None
            outputs[key] = [found.runtime()] if found else []
            resolved[key] = found.id if found else None
            self._log(
                f"{task}: resolver {key}: filter {filled if filled is not None else text!r} -> "
                + (
                    f"artifact {found.id} ({found.schema_title} from {found.run_id}/{found.task}) {found.uri}"
                    if found
                    else "nothing"
                )
            )
        result.outputs[task] = outputs
        result.output_parameters[task] = {}
        result.records[task] = TaskRecord(task, "resolver", round(time.monotonic() - start, 3), resolved=resolved)

    @staticmethod
    def _fill_filter(text: str, inputs: Mapping[str, list[dict[str, Any]]]) -> str | None:
        """Fill ``{{$.inputs.artifacts['k'].metadata['f']}}``; None when the input or field is absent (no match)."""
        missing = False

        def fill(match: re.Match[str]) -> str:
            nonlocal missing
            artifacts = inputs.get(match[1]) or []
            value = artifacts[0].get("metadata", {}).get(match[2]) if artifacts else None
            if value is None:
                missing = True
                return ""
            return placeholder_text(value)

        filled = FILTER_INPUT_RE.sub(fill, text)
        leftover = PLACEHOLDER_RE.search(filled)
        if leftover:
            raise UnsupportedSpec(f"resolver filter placeholder {leftover.group(0)!r} in {text!r}")
        return None if missing else filled

    # -- container tasks

    def _provision_outputs(self, task: str, result: RunResult) -> dict[str, Any]:
        """``provisionOutputs``: fresh URIs under ``<root>/<pipeline>/<run>/<task>/<uuid>/``."""
        component = self.component(task)
        task_root = Path(self.pipeline_root) / self.pipeline_name / result.run_id / task / uuid.uuid4().hex
        outputs: dict[str, Any] = {"artifacts": {}, "parameters": {}}
        for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            artifact = {"name": name, "uri": str(task_root / name), "type": definition["artifactType"]}
            if "metadata" in definition:
                artifact["metadata"] = copy.deepcopy(definition["metadata"])
            outputs["artifacts"][name] = {"artifacts": [artifact]}
        for name in component.get("outputDefinitions", {}).get("parameters", {}):
            outputs["parameters"][name] = {"outputFile": str(task_root / "parameters" / name)}
        outputs["outputFile"] = str(task_root / "output_metadata.json")
        # prepareOutputFolders
        task_root.mkdir(parents=True, exist_ok=True)
        (task_root / "parameters").mkdir(exist_ok=True)
        return outputs

    @staticmethod
    def _executor_input_json(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Validate as a ``pipeline_spec_pb2.ExecutorInput`` and serialise compactly (protojson style)."""
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        message = json_format.ParseDict({"inputs": inputs, "outputs": outputs}, pipeline_spec_pb2.ExecutorInput())
        as_dict = json_format.MessageToDict(message)
        return as_dict, json.dumps(as_dict, separators=(",", ":"))

    @staticmethod
    def _read_executor_output(path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        message = json_format.Parse(path.read_text(), pipeline_spec_pb2.ExecutorOutput())
        return json_format.MessageToDict(message)

    def _compile_command(
        self, task: str, template: Sequence[str], executor_input: dict[str, Any], text: str
    ) -> list[str]:
        """``compileCmdAndArgs``: ``{{$}}`` and the ``getPlaceholders`` map; anything else left is an error."""
        placeholders: dict[str, str] = {}
        for name, artifacts in executor_input.get("inputs", {}).get("artifacts", {}).items():
            if artifacts.get("artifacts"):
                uri = artifacts["artifacts"][0]["uri"]
                placeholders[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = uri
                placeholders[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = uri  # local root: path == uri
        for name, artifacts in executor_input["outputs"].get("artifacts", {}).items():
            uri = artifacts["artifacts"][0]["uri"]
            placeholders[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = uri
            placeholders[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = uri
        for name, value in executor_input.get("inputs", {}).get("parameterValues", {}).items():
            placeholders[f"{{{{$.inputs.parameters['{name}']}}}}"] = placeholder_text(value)
        for name, parameter in executor_input["outputs"].get("parameters", {}).items():
            placeholders[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter["outputFile"]
        compiled = []
        for part in template:
            if part.lstrip().startswith(('{"IfPresent"', '{"Concat"')):
                raise UnsupportedSpec(f"task {task!r}: IfPresent/Concat placeholders are not supported: {part[:80]}")
            # Like Go: {{$}} first, then every placeholder over the whole string.
            filled = part.replace("{{$}}", text)
            bare = part.replace("{{$}}", "")
            for key, value in placeholders.items():
                filled = filled.replace(key, value)
                bare = bare.replace(key, value)
            leftover = PLACEHOLDER_RE.search(bare)
            if leftover:
                raise UnsupportedSpec(f"task {task!r}: placeholder {leftover.group(0)!r} is not supported")
            compiled.append(filled)
        return compiled

    def _check_forbidden(self, task: str, executor_input: dict[str, Any], command: Sequence[str], text: str) -> None:
        inputs = executor_input.get("inputs", {})
        for path in self.forbidden:
            for name, value in {**inputs.get("parameterValues", {}), **inputs.get("parameters", {})}.items():
                if path in json.dumps(value):
                    raise ReplayError(
                        f"task {task!r}: input parameter {name!r} names {path}, a path of the compiling machine "
                        f"that no container can see: {json.dumps(value)[:300]}"
                    )
            for part in command:
                if path in part.replace(text, ""):
                    raise ReplayError(f"task {task!r}: its command names {path} of the compiling machine: {part[:300]}")

    def _container_env(self, task: str, container: Mapping[str, Any], home: Path) -> dict[str, str]:
        env = self.runner.base_env(home)
        env.update(self.extra_env)
        for item in container.get("env", []):
            env[item["name"]] = item.get("value", "")
        label = self.spec["components"][self.tasks[task]["componentRef"]["name"]]["executorLabel"]
        for secret in self.platform_executors.get(label, {}).get("secretAsEnv", []):
            for item in secret["keyToEnv"]:
                where = (secret["secretName"], item["secretKey"])
                if where not in self.secrets:
                    raise ReplayError(f"task {task!r}: secret {where[0]} has no key {where[1]} (secretAsEnv)")
                env[item["envVar"]] = self.secrets[where]
        for key, value in env.items():
            for path in self.forbidden:
                if path in value:
                    raise ReplayError(f"task {task!r}: environment {key}={value} names {path} of the compiling machine")
        return env

    def _exec(
        self, task: str, what: str, command: list[str], env: dict[str, str], task_dir: Path, prefix: str = ""
    ) -> tuple[int, float, Path]:
        cwd = task_dir / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        executable = self.runner.which(command[0], env)
        if executable is None:
            raise ReplayError(f"task {task!r}: {command[0]!r} is not on the image PATH {env['PATH']}")
        (task_dir / f"{prefix}command.json").write_text(json.dumps({"command": command, "executable": executable}))
        shown = " ".join(c if len(c) <= 160 else f"{c[:80]}...<{len(c)} chars>" for c in command)
        self._log(f"{what} {task}: {shown}  [{executable}, cwd {cwd}]")
        start = time.monotonic()
        stderr_path = task_dir / f"{prefix}stderr.txt"
        mounts = [self.work_dir, Path(self.pipeline_root)]  # task folders, HOME and TMPDIR; the artifacts
        with open(task_dir / f"{prefix}stdout.txt", "w") as out, open(stderr_path, "w") as err:
            try:
                proc = self.runner.run(command, env, cwd, stdout=out, stderr=err, timeout=self.timeout, mounts=mounts)
                returncode = proc.returncode
            except subprocess.TimeoutExpired:
                returncode = -9
                err.write(f"\n[kfp_replay] killed after {self.timeout}s\n")
        seconds = round(time.monotonic() - start, 1)
        self._log(f"{what} {task}: exit {returncode} after {seconds:.1f}s")
        if returncode != 0:
            tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-STDERR_TAIL_LINES:])
            raise TaskFailed(task, returncode, tail, task_dir, what)
        return returncode, seconds, stderr_path

    def _run_container(self, task: str, result: RunResult) -> None:
        container = self.executor(task)["container"]
        task_dir = self.work_dir / "tasks" / result.run_id / task
        task_dir.mkdir(parents=True, exist_ok=True)
        env = self._container_env(task, container, self.work_dir / "home" / task)
        values, legacy = self._input_parameters(task, result)
        artifacts = self._input_artifacts(task, result)
        outputs = self._provision_outputs(task, result)
        record = TaskRecord(task, "container", task_dir=task_dir)
        start = time.monotonic()

        def executor_input() -> tuple[dict[str, Any], str]:
            listed = {name: {"artifacts": found} for name, found in artifacts.items()}
            inputs: dict[str, Any] = {"parameterValues": values, "artifacts": listed}
            if legacy:
                inputs["parameters"] = legacy
            return self._executor_input_json(inputs, outputs)

        pre = container.get("lifecycle", {}).get("preCacheCheck")
        unknown_lifecycle = sorted(set(container.get("lifecycle", {})) - {"preCacheCheck"})
        if unknown_lifecycle:
            raise UnsupportedSpec(f"task {task!r}: container lifecycle {unknown_lifecycle}")
        if pre:
            as_dict, text = executor_input()
            command = self._compile_command(task, [*pre.get("command", []), *pre.get("args", [])], as_dict, text)
            self._check_forbidden(task, as_dict, command, text)
            (task_dir / "pre_cache_check.executor_input.json").write_text(json.dumps(as_dict, indent=1))
            code, seconds, _ = self._exec(task, "preCacheCheck", command, env, task_dir, prefix="pre_cache_check.")
            driver_output = self._read_executor_output(Path(outputs["outputFile"])) or {}
            record.pre_cache_check = {
                "command": command,
                "returncode": code,
                "seconds": seconds,
                "output": driver_output,
            }
            # Merge what the driver computed (span, version, fingerprint, resolved input_config, artifact metadata).
            for name, value in driver_output.get("parameterValues", {}).items():
                values[name] = value
                if legacy:
                    kind = self.component(task).get("inputDefinitions", {}).get("parameters", {}).get(name, {})
                    legacy[name] = python_to_legacy(value, kind.get("type"))
            for name, value in driver_output.get("parameters", {}).items():
                legacy[name] = value
            self._merge_output_artifacts(outputs["artifacts"], driver_output)

        as_dict, text = executor_input()
        main = [*container.get("command", []), *container.get("args", [])]
        if not main:
            raise UnsupportedSpec(f"task {task!r}: a container without command or args (image entrypoint)")
        command = self._compile_command(task, main, as_dict, text)
        self._check_forbidden(task, as_dict, command, text)
        (task_dir / "executor_input.json").write_text(json.dumps(as_dict, indent=1))
        record.command, record.executor_input = command, as_dict
        record.returncode, _, _ = self._exec(task, "task", command, env, task_dir)
        executor_output = self._read_executor_output(Path(outputs["outputFile"])) or {}
        record.executor_output = executor_output
        (task_dir / "executor_output.json").write_text(json.dumps(executor_output, indent=1))
        self._merge_output_artifacts(outputs["artifacts"], executor_output)

        # collectOutputParameters
        output_parameters: dict[str, Any] = {}
        definitions = self.component(task).get("outputDefinitions", {}).get("parameters", {})
        for name, parameter in outputs["parameters"].items():
            if name in executor_output.get("parameterValues", {}):
                output_parameters[name] = executor_output["parameterValues"][name]
                continue
            path = Path(parameter["outputFile"])
            if not path.exists():
                raise ReplayError(f"task {task!r}: output parameter {name!r} not written to {path}")
            output_parameters[name] = parameter_text_to_value(path.read_text(), definitions[name]["parameterType"])

        # uploadOutputArtifacts + RecordArtifact: every provisioned output becomes a LIVE artifact.
        recorded: dict[str, list[dict[str, Any]]] = {}
        for key, listing in outputs["artifacts"].items():
            recorded[key] = []
            for artifact in listing["artifacts"]:
                stored = self.store.add(
                    pipeline=self.pipeline_name,
                    run_id=result.run_id,
                    task=task,
                    output_key=key,
                    schema_title=schema_title(artifact["type"]),
                    type=artifact["type"],
                    uri=artifact["uri"],
                    metadata=artifact.get("metadata", {}),
                )
                recorded[key].append(stored.runtime())
        result.outputs[task] = recorded
        result.output_parameters[task] = output_parameters
        record.seconds = round(time.monotonic() - start, 1)
        result.records[task] = record
        summary = {k: [(a["name"], a["uri"]) for a in v] for k, v in recorded.items()}
        self._log(f"task {task}: recorded {json.dumps(summary)}")

    @staticmethod
    def _merge_output_artifacts(provisioned: dict[str, Any], executor_output: Mapping[str, Any]) -> None:
        """``mergeRuntimeArtifacts``: the executor's uri (if any) and metadata fields win."""
        for key, listing in executor_output.get("artifacts", {}).items():
            if key not in provisioned or not listing.get("artifacts"):
                continue
            source, target = listing["artifacts"][0], provisioned[key]["artifacts"][0]
            if source.get("uri"):
                target["uri"] = source["uri"]
            if source.get("metadata"):
                target.setdefault("metadata", {}).update(source["metadata"])
