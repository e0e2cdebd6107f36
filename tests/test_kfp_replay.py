"""Kubeflow tier: the compiled KFP V2 spec really runs, task by task, in a clean image venv.

:mod:`support.kfp_replay` stands in for the backend: every container task runs its
``command + args`` exactly as the spec writes them, in a virtualenv holding only
the hashed lock and the project wheel, from a scratch folder, with the
ExecutorInput the KFP driver would build. Runtime parameters get non-default
values and the test checks that the run used each of them; the run ends with a
blessed model in the bucket, under the bucket contract.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import kfp_replay, tiny
from support.span_helpers import count_records

from bucket import layout, verify
from bucket import versions as bucket_versions
from pipeline import config as config_lib
from pipeline import kubeflow_runner
from shelf_data import synth

pytestmark = pytest.mark.kfp

# Beam runs DoFns in worker processes, so everything they hold is pickled as on Dataflow.
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
IMAGE = "shelf-audit:kfp-replay"
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
SPAN_1 = json.dumps({"static_range": {"start_span_number": 1, "end_span_number": 1}})
EPOCHS = 2
PLANNED_PARAMETERS = {"input_base": "STRING", "range_config": "STRING", "bucket": "STRING", "epochs": "NUMBER_INTEGER"}


@dataclasses.dataclass
class Compiled:
    tmp: Path
    config: config_lib.PipelineConfig
    spec: dict
    span_counts: dict[int, int]


@dataclasses.dataclass
class Replayed:
    compiled: Compiled
    replay: kfp_replay.Replay
    result: kfp_replay.RunResult
    parameters: dict

    @property
    def spec(self) -> dict:
        return self.compiled.spec

    @property
    def bucket(self) -> str:
        return self.parameters["bucket"]

    @property
    def default_bucket(self) -> str:
        return self.compiled.config.push.bucket

    @property
    def model_name(self) -> str:
        return self.compiled.config.push.model_name


def _compile(tmp: Path) -> Compiled:
    """Two spans in the data root the run is given, a decoy span in the config's default root, the spec."""
    data, decoy = tmp / "data", tmp / "default-data"
    counts = {
        span: synth.generate(str(data), span=span, count=count, seed=10 + span).count
        for span, count in ((1, 160), (2, 190))
    }
    synth.generate(str(decoy), span=5, count=40, seed=5)
    config_path = tmp / "tiny.toml"
    settings = {"beam_args": BEAM_ARGS, "data.input_base": str(decoy), "push.bucket": str(tmp / "default-bucket")}
    tiny.write_tiny_config(config_path, "tiny-kfp", settings)
    config = config_lib.load(config_path)
    spec = kubeflow_runner.compile_spec(config, str(tmp / "pipeline_root"), image=IMAGE)
    (tmp / "spec.json").write_text(json.dumps(spec, indent=1))
    return Compiled(tmp, config, spec, counts)


def _replay(compiled: Compiled, image: kfp_replay.Image, work_dir: Path) -> Replayed:
    replay = kfp_replay.Replay(
        compiled.spec,
        python=image.python,
        work_dir=work_dir,
        pipeline_root=compiled.tmp / "pipeline_root",
        env=IMAGE_ENV,
        forbidden_paths=[kfp_replay.REPO_ROOT],
    )
    parameters = {
        "input_base": str(compiled.tmp / "data"),
        "range_config": SPAN_1,
        "bucket": str(compiled.tmp / "bucket"),
        "epochs": EPOCHS,
    }
    return Replayed(compiled, replay, replay.run(parameters), parameters)


# Session-wide and shared by pytest-xdist workers: the image venv, the spec and the (slow) replayed run.
@pytest.fixture(scope="session")
def image(tmp_path_factory) -> kfp_replay.Image:
    return kfp_replay.cached_image(tmp_path_factory)


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> Compiled:
    return kfp_replay.shared(tmp_path_factory, "kfp-spec", _compile)


@pytest.fixture(scope="session")
def replayed(tmp_path_factory, compiled, image) -> Replayed:
    return kfp_replay.shared(tmp_path_factory, "kfp-run", lambda work_dir: _replay(compiled, image, work_dir))


# --- The image ---------------------------------------------------------------------


def _names(lines: list[str]) -> set[str]:
    found = set()
    for line in lines:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(==| @ )", line)  # "name==1.0" or "name @ file:///..."
        if match:
            found.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return found


def test_image_venv_holds_exactly_the_lock_and_the_wheel(image):
    freeze = subprocess.run(
        [kfp_replay.find_uv(), "pip", "freeze", "--python", str(image.python)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    lock = (kfp_replay.REPO_ROOT / "requirements.lock").read_text().splitlines()
    assert _names(freeze) == _names(lock) | {"shelf-audit"}
    assert image.wheel.name.startswith("shelf_audit-")


# --- The spec ----------------------------------------------------------------------


def test_spec_declares_the_runtime_parameters_with_defaults(compiled):
    config, spec = compiled.config, compiled.spec
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    assert {name: d.get("parameterType") for name, d in declared.items()} == PLANNED_PARAMETERS
    assert declared["epochs"]["defaultValue"] == config.training.epochs
    assert declared["bucket"]["defaultValue"] == config.push.bucket
    assert declared["input_base"]["defaultValue"] == config.data.input_base
    assert declared["range_config"]["defaultValue"] == ""


def test_only_the_kfp_backend_spec_suits_open_source_kubeflow(compiled):
    """Open-source KFP refuses resolver tasks and skips preCacheCheck; `--backend kfp` leaves both out."""
    blockers = kfp_replay.kfp_oss_blockers(compiled.spec)
    assert blockers and all("resolver" in b or "preCacheCheck" in b for b in blockers), blockers
    oss = kubeflow_runner.for_open_source_kfp(copy.deepcopy(compiled.spec))
    assert kfp_replay.kfp_oss_blockers(oss) == []
    assert "baseline_model" not in oss["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]


# --- The replayed run --------------------------------------------------------------


def test_every_task_ran_in_the_image_from_outside_the_repository(replayed):
    r = replayed
    assert set(r.result.records) == set(r.spec["root"]["dag"]["tasks"])
    for name, record in r.result.records.items():
        if record.kind == "container":
            assert record.returncode == 0, name
            assert not Path(record.task_dir / "cwd").resolve().is_relative_to(kfp_replay.REPO_ROOT)
            executable = json.loads((record.task_dir / "command.json").read_text())["executable"]
            assert Path(executable).parent == r.replay.python.parent, (name, executable)
    # TFX's file-based ExampleGen driver ran first and resolved the span.
    pre = r.result.records["ImportExampleGen"].pre_cache_check
    assert pre is not None and pre["returncode"] == 0
    assert pre["output"]["parameterValues"]["span"] == 1


def test_first_run_has_no_baseline(replayed):
    r = replayed
    resolvers = r.replay.tasks_of_kind("resolver")
    assert len(resolvers) == 2
    for name in resolvers:
        assert set(r.result.records[name].resolved.values()) == {None}, name
    evaluator_inputs = r.result.records["Evaluator"].executor_input["inputs"]["artifacts"]
    assert not evaluator_inputs.get("baseline_model", {}).get("artifacts")
    blessing = r.result.artifact("Evaluator", "blessing")
    assert blessing["metadata"]["blessed"] == 1


def test_runtime_parameters_were_used(replayed):
    r = replayed
    declared = r.spec["root"]["inputDefinitions"]["parameters"]
    for name, value in r.parameters.items():
        assert value != declared[name].get("defaultValue"), f"{name} must differ from its default to prove anything"
    assert r.result.parameters == r.parameters

    # input_base + range_config: the examples are span 1 of the given data root (not the latest, span 2,
    # nor the default root's span 5).
    example_gen = r.result.records["ImportExampleGen"]
    assert example_gen.executor_input["inputs"]["parameterValues"]["input_base"] == r.parameters["input_base"]
    assert f"{r.parameters['input_base']}/span-1/" in example_gen.stderr
    examples = r.result.artifact("ImportExampleGen", "examples")
    # TFX records the span as a custom property and prefixes it because Examples also has a "span" property.
    assert examples["metadata"].get("span", examples["metadata"].get("custom:span")) == 1
    assert count_records(examples["uri"]) == r.compiled.span_counts[1]

    # epochs: what the Trainer wrote next to its model.
    model_run = Path(r.result.artifact("Trainer", "model_run")["uri"])
    summaries = list(model_run.rglob("training_summary.json"))
    assert summaries, f"no training_summary.json under {model_run}"
    assert json.loads(summaries[0].read_text())["epochs_run"] == EPOCHS

    # bucket: published to the given bucket, nothing in the default one.
    assert bucket_versions.list_versions(r.bucket, r.model_name)
    assert bucket_versions.list_versions(r.default_bucket, r.model_name) == []


def test_bucket_latest_is_a_complete_verified_version(replayed):
    r = replayed
    versions = bucket_versions.list_versions(r.bucket, r.model_name)
    latest = bucket_versions.read_latest(r.bucket, r.model_name)
    assert versions == [latest]
    assert bucket_versions.is_complete(r.bucket, r.model_name, latest)
    manifest = bucket_versions.read_manifest(r.bucket, r.model_name)
    assert manifest["version"] == latest and manifest["model_name"] == r.model_name
    folder = Path(layout.version_dir(r.bucket, r.model_name, latest))
    assert set(manifest["files"]) <= {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    verdict = verify.verify_version(r.bucket, r.model_name, latest)
    assert verdict.ok, verdict.problems


def test_resolvers_now_find_the_blessed_model(replayed):
    """The baseline a second run would get: only the two resolver tasks, against the replay's artifact store."""
    r = replayed
    resolvers = r.replay.tasks_of_kind("resolver")
    again = r.replay.run(r.parameters, only=resolvers)
    blessing = r.result.artifact("Evaluator", "blessing")
    model = r.result.artifact("Trainer", "model")
    found = {key: again.artifact(task, key) for task in resolvers for key in again.outputs[task]}
    assert found["model_blessing"]["name"] == blessing["name"]
    assert found["model"]["name"] == model["name"] and found["model"]["uri"] == model["uri"]


# --- The harness itself (fast) -------------------------------------------------------


def test_filter_supports_exactly_the_clauses_tfx_emits():
    store = kfp_replay.ArtifactStore()
    kinds = dict(pipeline="p", run_id="r", task="t", output_key="k", type={"schemaTitle": "tfx.ModelBlessing"}, uri="u")
    store.add(schema_title="tfx.ModelBlessing", metadata={"blessed": 0}, **kinds)
    store.add(schema_title="tfx.ModelBlessing", metadata={"blessed": 1.0, "current_model_id": "7"}, **kinds)
    store.add(schema_title="tfx.ModelBlessing", metadata={"blessed": 1}, **kinds)
    query = 'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1'
    assert store.query("p", query).id == 3  # the latest match wins
    assert store.query("other-pipeline", query) is None
    assert store.query("p", 'schema_title="tfx.ModelBlessing" AND state=LIVE AND name="2"').id == 2
    for unsupported in (
        'schema_title="x" OR state=LIVE',
        "metadata.blessed.string_value=1",
        "create_time_since_epoch>0",
    ):
        with pytest.raises(kfp_replay.UnsupportedSpec):
            kfp_replay.compile_filter(unsupported)


def test_numbers_fill_placeholders_like_the_go_launcher():
    assert [kfp_replay.placeholder_text(v) for v in (3.0, 0.02, 1e-05, 100.0, True)] == [
        "3",
        "0.02",
        "0.00001",
        "100",
        "true",
    ]


def test_unsupported_executor_kinds_are_named(tmp_path):
    spec = {
        "pipelineInfo": {"name": "p"},
        "root": {"dag": {"tasks": {"imp": {"taskInfo": {"name": "imp"}, "componentRef": {"name": "comp-imp"}}}}},
        "components": {"comp-imp": {"executorLabel": "exec-imp"}},
        "deploymentSpec": {"executors": {"exec-imp": {"importer": {"artifactUri": {"constant": "gs://x"}}}}},
    }
    with pytest.raises(kfp_replay.UnsupportedSpec, match="'imp'.*'importer'"):
        kfp_replay.Replay(spec, python="/nonexistent/python", work_dir=tmp_path)


# A two-task pipeline whose containers are tiny Python programs: fills, merges and failures in a second.
PRODUCE = """
import json, pathlib, sys
executor_input, out_path, greeting, count = sys.argv[1:]
pathlib.Path(out_path).mkdir(parents=True)
(pathlib.Path(out_path) / "data.txt").write_text(greeting * int(count))
output = {"artifacts": {"out": {"artifacts": [{"metadata": {"note": greeting, "count": int(count)}}]}}}
pathlib.Path(json.loads(executor_input)["outputs"]["outputFile"]).write_text(json.dumps(output))
"""
CONSUME = """
import json, pathlib, sys
src = json.loads(sys.argv[1])["inputs"]["artifacts"]["src"]["artifacts"][0]
assert src["metadata"] == {"note": "bonjour", "count": 3}, src
assert pathlib.Path(sys.argv[2], "data.txt").read_text() == "bonjour" * 3
print("consumed", src["name"])
sys.exit(int(sys.argv[3]))
"""


def _tiny_spec(exit_code: int = 0) -> dict:
    dataset = {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}

    def container(program: str, args: list[str]) -> dict:
        return {"container": {"image": "x", "command": ["python", "-c", program], "args": args}}

    return {
        "pipelineInfo": {"name": "tiny"},
        "schemaVersion": "2.1.0",
        "root": {
            "inputDefinitions": {"parameters": {"greeting": {"parameterType": "STRING", "defaultValue": "hello"}}},
            "dag": {
                "tasks": {
                    "consume": {
                        "taskInfo": {"name": "consume"},
                        "componentRef": {"name": "comp-consume"},
                        "dependentTasks": ["produce"],
                        "inputs": {
                            "artifacts": {
                                "src": {"taskOutputArtifact": {"producerTask": "produce", "outputArtifactKey": "out"}}
                            }
                        },
                    },
                    "produce": {
                        "taskInfo": {"name": "produce"},
                        "componentRef": {"name": "comp-produce"},
                        "inputs": {
                            "parameters": {
                                "greeting": {"componentInputParameter": "greeting"},
                                "count": {"runtimeValue": {"constant": 3.0}},
                            }
                        },
                    },
                }
            },
        },
        "components": {
            "comp-produce": {
                "executorLabel": "exec-produce",
                "inputDefinitions": {
                    "parameters": {
                        "greeting": {"parameterType": "STRING"},
                        "count": {"parameterType": "NUMBER_INTEGER"},
                    }
                },
                "outputDefinitions": {"artifacts": {"out": {"artifactType": dataset}}},
            },
            "comp-consume": {
                "executorLabel": "exec-consume",
                "inputDefinitions": {"artifacts": {"src": {"artifactType": dataset}}},
            },
        },
        "deploymentSpec": {
            "executors": {
                "exec-produce": container(
                    PRODUCE,
                    [
                        "{{$}}",
                        "{{$.outputs.artifacts['out'].path}}",
                        "{{$.inputs.parameters['greeting']}}",
                        "{{$.inputs.parameters['count']}}",
                    ],
                ),
                "exec-consume": container(CONSUME, ["{{$}}", "{{$.inputs.artifacts['src'].uri}}", str(exit_code)]),
            }
        },
    }


def test_placeholders_parameters_and_executor_output_flow_downstream(tmp_path):
    replay = kfp_replay.Replay(_tiny_spec(), python=Path(sys.executable), work_dir=tmp_path)
    assert replay.order() == ["produce", "consume"]
    result = replay.run({"greeting": "bonjour"})
    out = result.artifact("produce", "out")
    assert out["metadata"] == {"note": "bonjour", "count": 3}
    assert out["uri"].startswith(str(tmp_path / "pipeline_root" / "tiny" / result.run_id / "produce"))
    assert result.records["produce"].command[-1] == "3"  # a NUMBER_INTEGER constant 3.0 fills as "3", as in Go
    assert f"consumed {out['name']}" in result.records["consume"].stdout
    assert [a.schema_title for a in replay.store.artifacts] == ["system.Dataset"]
    with pytest.raises(kfp_replay.ReplayError, match="not declared"):
        replay.run({"greting": "typo"})
    with pytest.raises(kfp_replay.ReplayError, match="type mismatch"):
        replay.run({"greeting": 5})


def test_a_failing_task_is_named_with_its_exit_code_and_stderr(tmp_path):
    replay = kfp_replay.Replay(_tiny_spec(exit_code=3), python=Path(sys.executable), work_dir=tmp_path)
    with pytest.raises(kfp_replay.TaskFailed) as failure:
        replay.run()  # the default greeting reaches the consumer, whose check fails
    assert failure.value.task == "consume" and failure.value.returncode == 1
    assert "AssertionError" in failure.value.stderr_tail and "'note': 'hello'" in failure.value.stderr_tail
    with pytest.raises(kfp_replay.TaskFailed) as failure:
        replay.run({"greeting": "bonjour"})
    assert failure.value.task == "consume" and failure.value.returncode == 3
    assert "exit code 3" in str(failure.value)


def test_compiling_machine_paths_are_refused(tmp_path):
    spec = _tiny_spec()
    spec["root"]["inputDefinitions"]["parameters"]["greeting"]["defaultValue"] = str(tmp_path / "checkout" / "x")
    replay = kfp_replay.Replay(
        spec, python=Path(sys.executable), work_dir=tmp_path / "w", forbidden_paths=[tmp_path / "checkout"]
    )
    with pytest.raises(kfp_replay.ReplayError, match="'produce'.*'greeting'.*compiling machine"):
        replay.run()
