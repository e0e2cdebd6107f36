"""Pipeline tier: the DAG factory's wiring, and what Kubeflow gets from `shelf-audit compile`."""

from __future__ import annotations

import json
import logging
import os

import pytest

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
    assert {n.id for n in by_id["TFLitePusher"].upstream_nodes} >= {"Evaluator", "Trainer", "Transform"}
    assert list(dag.beam_pipeline_args) == list(production.beam_args)


def test_dag_needs_a_bucket(tmp_path):
    config = config_lib.PipelineConfig()
    with pytest.raises(ValueError, match="push.bucket"):
        run_inputs(config, str(tmp_path / "data"))


def test_span_range_reaches_example_gen(tmp_path):
    config = config_lib.from_dict({"data": {"span_from": 2, "span_to": 5}, "push": {"bucket": str(tmp_path)}})
    dag = create_pipeline(config, str(tmp_path / "root"), run_inputs(config, str(tmp_path / "data")))
    gen = next(c for c in dag.components if c.id == "ImportExampleGen")
    range_config = json.loads(gen.exec_properties["range_config"])
    assert range_config["static_range"] == {"start_span_number": 2, "end_span_number": 5}


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


def test_data_gate_names_records_whose_image_transform_could_not_use(tmp_path, make_image):
    """Component tier: the gate's image check over a hand-built Examples artifact."""
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from components.data_gate import bad_image_lines
    from shelf_data.contract import PhotoRecord, make_example

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    photos = {
        "train": [make_image("RGB", (120, 90)), b"\xff\xd8 truncated jpeg", make_image("L", (40, 200), "PNG")],
        "eval": [make_image("L", (64, 64), "PNG")],
    }
    for split, images in photos.items():
        os.makedirs(tmp_path / "examples" / f"Split-{split}")
        path = str(tmp_path / "examples" / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
            for i, image in enumerate(images):
                record = PhotoRecord(image=image, label=0, lane_id=i + 1, device_id="zebra-tc52")
                writer.write(make_example(record).SerializeToString())
    count, lines = bad_image_lines(examples)
    assert count == 2
    assert lines[0].startswith("train: data_tfrecord-00000-of-00001.gz record 1 (lane_id=2, device_id=zebra-tc52)")
    assert "does not decode" in lines[0]
    assert "record 2" in lines[1] and "40x200, below 64x64" in lines[1]
