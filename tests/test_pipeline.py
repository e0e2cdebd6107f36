"""Pipeline tier: the DAG factory's wiring, and what Kubeflow gets from `shelf-audit compile`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from unittest import mock

import pytest
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

from pipeline import config as config_lib
from pipeline.pipeline import code_fingerprint, create_pipeline, run_inputs
from shelf_audit.run_cmd import _StageFilter

pytestmark = pytest.mark.component

EXPECTED_NODES = {
    "ImportExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "DataGate",
    "SpanDrift",
    "Transform",
    "Trainer",
    "latest_blessed_model_resolver",
    "Evaluator",
    "TFLitePusher",
}


@pytest.fixture(scope="module")
def production() -> config_lib.PipelineConfig:
    return config_lib.load("configs/production.toml")


def test_dag_has_every_stage_in_order(tmp_path, production):
    inputs = run_inputs(production, str(tmp_path / "data"), str(tmp_path / "b"))
    dag = create_pipeline(production, str(tmp_path / "root"), inputs)
    ids = [c.id for c in dag.components]
    assert set(ids) == EXPECTED_NODES
    by_id = {c.id: c for c in dag.components}
    # The data gate stands between the validator and Transform: bad data stops the run.
    assert "DataGate" in {n.id for n in by_id["Transform"].upstream_nodes}
    assert "ExampleValidator" in {n.id for n in by_id["DataGate"].upstream_nodes}
    assert {n.id for n in by_id["Evaluator"].upstream_nodes} >= {"Trainer", "latest_blessed_model_resolver"}
    assert {n.id for n in by_id["TFLitePusher"].upstream_nodes} >= {"Evaluator", "Trainer", "Transform", "SpanDrift"}
    assert list(dag.beam_pipeline_args) == list(production.beam_args)


def test_dag_needs_a_bucket(tmp_path):
    config = config_lib.PipelineConfig()
    with pytest.raises(ValueError, match="push.bucket"):
        run_inputs(config, str(tmp_path / "data"))


def _empty_spans(root, *numbers: int) -> str:
    for span in numbers:
        os.makedirs(root / f"span-{span}")
        (root / f"span-{span}" / "part-00000-of-00001.tfrecord.gz").write_bytes(b"")
    return str(root)


def _static(first: int, last: int) -> dict:
    return {"static_range": {"start_span_number": first, "end_span_number": last}}


@pytest.mark.parametrize(
    ("spans", "resolved"),
    [("latest", _static(7, 7)), ("last:2", _static(5, 7)), ("last:9", _static(2, 7)), ("3-6", _static(5, 5))],
)
def test_a_local_run_reads_the_concrete_spans_of_its_selection(tmp_path, spans, resolved):
    """run_inputs resolves the selection against the spans present: the static range ExampleGen gets."""
    from components.example_gen.component import SpanWindowExampleGen

    data = _empty_spans(tmp_path / "data", 2, 5, 7)
    config = config_lib.from_dict({"data": {"spans": spans}, "push": {"bucket": str(tmp_path)}})
    inputs = run_inputs(config, data)
    assert json.loads(inputs.range_config) == resolved
    dag = create_pipeline(config, str(tmp_path / "root"), inputs)
    gen = next(c for c in dag.components if c.id == "ImportExampleGen")
    assert isinstance(gen, SpanWindowExampleGen)
    assert json.loads(gen.exec_properties["range_config"]) == resolved


def test_without_spans_yet_the_selection_is_left_to_example_gen_and_logged(tmp_path, caplog):
    config = config_lib.from_dict({"data": {"spans": "last:3"}, "push": {"bucket": str(tmp_path)}})
    with caplog.at_level(logging.WARNING, logger="shelf_audit.pipeline"):
        inputs = run_inputs(config, str(tmp_path / "nothing-yet"))
    assert json.loads(inputs.range_config) == {"rolling_range": {"num_spans": 3}}
    assert "span selection last:3 not resolved while building the pipeline: no span found" in caplog.text


def test_drift_settings_reach_span_drift_and_stop_on_drift_guards_transform(tmp_path):
    data = _empty_spans(tmp_path / "data", 1)

    def dag_of(drift: dict):
        config = config_lib.from_dict({"drift": drift, "push": {"bucket": str(tmp_path)}})
        dag = create_pipeline(config, str(tmp_path / "root"), run_inputs(config, data))
        return {c.id: c for c in dag.components}

    reported = dag_of({})
    assert "SpanDrift" not in {n.id for n in reported["Transform"].upstream_nodes}
    settings = json.loads(reported["SpanDrift"].exec_properties["settings"])
    assert settings["stop_on_drift"] is False and settings["infinity_norm"]["device_id"] == 0.1
    assert reported["SpanDrift"].exec_properties["input_base"] == data
    stopping = dag_of({"stop_on_drift": True})
    assert "SpanDrift" in {n.id for n in stopping["Transform"].upstream_nodes}
    disabled = dag_of({"enabled": False})
    assert "SpanDrift" not in disabled
    assert "drift" not in disabled["TFLitePusher"].inputs


def test_kubeflow_spec_runs_our_span_driver_and_takes_last_k_as_runtime_parameter(tmp_path):
    from pipeline import kubeflow_runner

    config = config_lib.from_dict({"data": {"spans": "last:3"}, "kubeflow": {"image": "img"}})
    spec = kubeflow_runner.compile_spec(config, "gs://ml/root")
    declared = spec["root"]["inputDefinitions"]["parameters"]["range_config"]
    assert json.loads(declared["defaultValue"]) == {"rolling_range": {"num_spans": 3}}
    executors = spec["deploymentSpec"]["executors"]
    container = executors["ImportExampleGen_executor"]["container"]
    assert container["lifecycle"]["preCacheCheck"]["command"] == ["python", "-m", "components.example_gen.driver"]
    assert container["args"][:2] == ["--executor_class_path", "components.example_gen.executor.Executor"]
    drift_task = spec["root"]["dag"]["tasks"]["SpanDrift"]["inputs"]["parameters"]
    assert drift_task["input_base"] == {"componentInputParameter": "input_base"}
    with pytest.raises(ValueError, match="no preCacheCheck runs tfx.orchestration.kubeflow.v2"):
        kubeflow_runner.use_span_window_driver(spec)  # already swapped: a TFX change would be caught


def test_code_fingerprint_is_stable_and_feeds_the_cache_key(tmp_path, production):
    assert code_fingerprint() == code_fingerprint()
    dag = create_pipeline(production, str(tmp_path / "root"), run_inputs(production, str(tmp_path), str(tmp_path)))
    trainer = next(c for c in dag.components if c.id == "Trainer")
    assert json.loads(trainer.exec_properties["custom_config"])["code_fingerprint"] == code_fingerprint()


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_default_log_keeps_stage_lines_warnings_and_our_own_progress():
    keep = _StageFilter().filter
    assert keep(_record("absl", logging.INFO, "Component Trainer is running."))
    assert keep(_record("absl", logging.WARNING, "something odd"))
    assert keep(_record("shelf_model.trainer", logging.INFO, "epoch 3: 4800 images in 19.0s, 252 images/s"))
    assert keep(_record("shelf_audit.run", logging.INFO, "running shelf-audit-demo on data/demo"))
    assert not keep(_record("absl", logging.INFO, "Going to run a new execution 7"))
    assert not keep(_record("absl", logging.WARNING, "ArtifactQuery.property_predicate is not supported."))


def test_three_splits_each_with_one_job(tmp_path, production):
    """ExampleGen writes train/validation/eval; the Trainer watches validation and only the gate reads eval."""
    inputs = run_inputs(production, str(tmp_path / "data"), str(tmp_path / "b"))
    by_id = {c.id: c for c in create_pipeline(production, str(tmp_path / "root"), inputs).components}
    output = json.loads(by_id["ImportExampleGen"].exec_properties["output_config"])["split_config"]
    assert [(s["name"], s["hash_buckets"]) for s in output["splits"]] == [("train", 8), ("validation", 1), ("eval", 1)]
    assert "partition_feature_name" not in output  # each photo hashed on its own by default
    trainer = by_id["Trainer"].exec_properties
    assert json.loads(trainer["train_args"])["splits"] == ["train"]
    assert json.loads(trainer["eval_args"])["splits"] == ["validation"]
    assert json.loads(by_id["Evaluator"].exec_properties["example_splits"]) == ["eval"]


def test_a_partition_feature_keeps_a_lane_on_one_side(tmp_path, production):
    config = production.replace(data=dataclasses.replace(production.data, partition_feature="lane_id"))
    inputs = run_inputs(config, str(tmp_path / "data"), str(tmp_path / "b"))
    gen = next(
        c for c in create_pipeline(config, str(tmp_path / "root"), inputs).components if c.id == "ImportExampleGen"
    )
    assert json.loads(gen.exec_properties["output_config"])["split_config"]["partition_feature_name"] == "lane_id"


class _BeamStage(BaseBeamExecutor):
    """A Beam executor that is only constructed (where TFX decides whether to package itself)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        raise AssertionError("not run")


@pytest.mark.parametrize(
    "beam_args",
    [
        (),
        ("--direct_num_workers=2",),
        ("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
        ("--runner=DataflowRunner", "--sdk_container_image=registry/shelf-audit:1"),
        ("--setup_file=./setup.py",),
    ],
)
def test_we_know_when_tfx_packages_itself_for_beam(tmp_path, beam_args):
    # Why the demo has no beam_args: TFX's Beam executors build an sdist of TFX for remote
    # workers whenever beam_args are given without a way to ship code, in every stage of every run.
    from tfx.utils import dependency_utils

    from pipeline.local_runner import tfx_builds_its_own_package

    with mock.patch.object(dependency_utils, "build_ephemeral_package", return_value="/x/tfx.tar.gz") as build:
        _BeamStage(BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args), tmp_dir=str(tmp_path)))
    assert build.called == tfx_builds_its_own_package(beam_args)
    assert build.called == (
        beam_args in {("--direct_num_workers=2",), ("--direct_running_mode=multi_processing", "--direct_num_workers=2")}
    )
    assert not tfx_builds_its_own_package(config_lib.load("configs/demo.toml").beam_args)
