"""Component tests of the TFLite pusher: executor over hand-built artifacts."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from unittest import mock

import pytest
import tensorflow as tf
from support import tflite_helpers as helpers
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.dsl.components.base import base_executor
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import channel_utils, standard_artifacts

from bucket import verify as bucket_verify
from bucket import versions
from components.tflite_pusher import TFLitePusher
from components.tflite_pusher import executor as ex
from components.tflite_pusher import settings as push_settings
from components.tflite_pusher.settings import PushSettings
from shelf_tflite import build
from shelf_tflite import verify as tflite_verify

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Model (tiny SavedModel), transformed examples and a model evaluation, built once."""
    root = str(tmp_path_factory.mktemp("pipeline"))
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(root, "Evaluator", "evaluation", "5")
    evaluation.id = 15
    _write_metrics(evaluation.uri)
    return {
        "root": root,
        "model": helpers.make_model_artifact(root),
        "examples": helpers.make_examples(root),
        "evaluation": evaluation,
        # Span 2 alone, and a window of spans 3 and 4 (its "span" is the newest, "spans" lists them all).
        "example_gen": [_example_gen_examples(root, 4, window="3,4"), _example_gen_examples(root, 2)],
    }


def _example_gen_examples(root: str, span: int, window: str = "") -> standard_artifacts.Examples:
    """ExampleGen's output as its driver records it: span, version and input fingerprint as custom properties."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "ImportExampleGen", "examples", str(span))
    examples.id = 100 + span
    examples.set_int_custom_property("span", span)
    examples.set_int_custom_property("version", 0)
    examples.set_string_custom_property("input_fingerprint", f"split:single_split,num_files:{span}")
    if window:
        examples.set_string_custom_property("spans", window)
    return examples


def _write_metrics(uri: str) -> None:
    tf.io.gfile.makedirs(uri)
    metrics = metrics_for_slice_pb2.MetricsForSlice()
    for name, class_id, value in (("weighted_recall", None, 0.91), ("recall", 2, 0.88), ("recall", 0, 0.95)):
        entry = metrics.metric_keys_and_values.add()
        entry.key.name = name
        if class_id is not None:
            entry.key.sub_key.class_id.value = class_id
        entry.value.double_value.value = value
    sliced = metrics_for_slice_pb2.MetricsForSlice()
    sliced.slice_key.single_slice_keys.add(column="lane_id", int64_value=3)
    with tf.io.TFRecordWriter(os.path.join(uri, "metrics-00000-of-00001.tfrecord")) as writer:
        writer.write(metrics.SerializeToString())
        writer.write(sliced.SerializeToString())


def _props(bucket: str, **overrides) -> dict:
    props = {
        push_settings.BUCKET_KEY: bucket,
        push_settings.MODEL_NAME_KEY: "shelf_audit",
        push_settings.VARIANTS_KEY: json.dumps(["fp16", "int8"]),
        push_settings.DEFAULT_VARIANT_KEY: "fp16",
        push_settings.SIZE_BUDGET_KEY: 5_000_000,
        push_settings.LATENCY_BUDGET_KEY: 20.0,
        push_settings.DAMAGED_TOLERANCE_KEY: 0.02,
        push_settings.PARITY_TOLERANCES_KEY: json.dumps({"fp32": 1e-5, "fp16": 1e-2}),
        push_settings.GOLDEN_COUNT_KEY: 4,
        push_settings.REPRESENTATIVE_COUNT_KEY: 40,
        ex.SOURCE_REVISION_KEY: "abc1234",
        ex.INPUTS_DIGEST_KEY: "d" * 64,
    }
    props.update(overrides)
    return props


def _run(artifacts, bucket: str, blessed: bool = True, name: str = "push", with_evaluation: bool = True, **props):
    inputs = {
        ex.MODEL_KEY: [artifacts["model"]],
        ex.MODEL_BLESSING_KEY: [helpers.make_blessing(os.path.join(artifacts["root"], name), blessed)],
        ex.TRANSFORMED_EXAMPLES_KEY: [artifacts["examples"]],
    }
    if with_evaluation:
        inputs[ex.MODEL_EVALUATION_KEY] = [artifacts["evaluation"]]
        inputs[ex.EXAMPLES_KEY] = artifacts["example_gen"]
    pushed = helpers.make_pushed_model(artifacts["root"], name)
    context = base_executor.BaseExecutor.Context(
        pipeline_info=pipeline_pb2.PipelineInfo(id="shelf-audit"), pipeline_run_id=f"run-{name}"
    )
    ex.Executor(context).Do(inputs, {ex.PUSHED_MODEL_KEY: [pushed]}, _props(bucket, **props))
    return pushed


def assert_pushed(pushed) -> None:
    assert pushed.get_int_custom_property("pushed") == 1, pushed.get_string_custom_property("pushed_reason")
    assert pushed.get_string_custom_property("pushed_version")
    assert pushed.get_string_custom_property("pushed_destination").endswith(
        "/versions/" + pushed.get_string_custom_property("pushed_version")
    )


def assert_not_pushed(pushed) -> None:
    assert pushed.get_int_custom_property("pushed") == 0
    assert not pushed.has_custom_property("pushed_version")


def test_blessed_model_is_published_with_a_valid_manifest(artifacts, tmp_path):
    bucket = str(tmp_path / "bucket")
    pushed = _run(artifacts, bucket)
    assert_pushed(pushed)
    version = pushed.get_string_custom_property("pushed_version")
    assert versions.read_latest(bucket, "shelf_audit") == version
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert manifest["default_variant"] == "fp16" and set(manifest["variants"]) == {"fp16", "int8"}
    assert set(manifest["files"]) >= {"model.tflite", "model_fp16.tflite", "model_int8.tflite", "labels.txt"}
    assert manifest["files"]["model.tflite"]["sha256"] == manifest["variants"]["fp16"]["sha256"]
    int8 = manifest["variants"]["int8"]
    assert int8["io"]["input"]["dtype"] == "uint8" and int8["io"]["input"]["scale"] == 1.0
    assert int8["agreement"] == 1.0 and int8["recall"]["damaged"] == 1.0 and int8["passed"]
    assert manifest["gate_metrics"]["overall"] == {"weighted_recall": 0.91}
    assert manifest["gate_metrics"]["per_class"] == {"damaged": {"recall": 0.88}, "ok": {"recall": 0.95}}
    lineage = manifest["lineage"]
    assert lineage["pipeline_name"] == "shelf-audit" and lineage["pipeline_run_id"] == "run-push"
    assert lineage["spans"] == [2, 3, 4] and lineage["source_revision"] == "abc1234"
    assert lineage["mlmd"]["model_artifact_id"] == 11 and lineage["mlmd"]["transformed_examples_artifact_id"] == 13
    assert lineage["mlmd"]["model_evaluation_artifact_id"] == 15
    assert lineage["mlmd"]["examples_artifact_ids"] == [102, 104]
    assert lineage["examples"][0] == {
        "artifact_id": 102,
        "span": 2,
        "spans": [2],
        "version": 0,
        "input_fingerprint": "split:single_split,num_files:2",
        "uri": os.path.join(artifacts["root"], "ImportExampleGen", "examples", "2"),
    }
    assert lineage["examples"][1]["span"] == 4 and lineage["examples"][1]["spans"] == [3, 4]
    assert lineage["inputs_digest"] == "d" * 64
    assert manifest["verification"]["eval_examples"] == 30
    assert pushed.get_string_custom_property("pushed_variant") == "fp16"
    assert pushed.get_int_custom_property("pushed_bytes") == manifest["variants"]["fp16"]["bytes"]
    assert os.path.exists(os.path.join(pushed.uri, "manifest.json"))
    assert bucket_verify.verify_version(bucket, "shelf_audit").ok


def test_not_blessed_converts_and_writes_nothing(artifacts, tmp_path):
    bucket = str(tmp_path / "bucket")
    with mock.patch.object(build, "convert_many") as convert:
        pushed = _run(artifacts, bucket, blessed=False, name="unblessed")
    convert.assert_not_called()
    assert_not_pushed(pushed)
    assert "not blessed" in pushed.get_string_custom_property("pushed_reason")
    assert not os.path.exists(bucket)


def test_default_variant_failing_drift_publishes_nothing(artifacts, tmp_path):
    bucket = str(tmp_path / "bucket")
    # A negative tolerance makes every variant "drift" (the settings themselves refuse it: set behind their back).
    strict = tflite_verify.VerifyConfig(damaged_recall_tolerance=-0.5)
    with mock.patch.object(ex, "verify_config", return_value=strict):
        pushed = _run(artifacts, bucket, name="drift")
    assert_not_pushed(pushed)
    reason = pushed.get_string_custom_property("pushed_reason")
    assert reason.startswith("default variant fp16 failed verification: drift: damaged recall")
    assert versions.list_versions(bucket, "shelf_audit") == [] and versions.read_latest(bucket, "shelf_audit") is None


def test_failing_non_default_variant_is_recorded_not_shipped(artifacts, tmp_path):
    bucket = str(tmp_path / "bucket")
    failed = tflite_verify.VariantReport(
        **{**_fake_report_fields(), "variant": "int8", "passed": False, "reasons": ("size: x",)}
    )
    real_verify = tflite_verify.verify_variant

    def verify(model_bytes, variant, **kwargs):
        return failed if variant == "int8" else real_verify(model_bytes, variant, **kwargs)

    with mock.patch.object(tflite_verify, "verify_variant", side_effect=verify):
        pushed = _run(artifacts, bucket, name="int8-fails", with_evaluation=False)
    assert_pushed(pushed)
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert manifest["variants"]["int8"]["file"] is None and manifest["variants"]["int8"]["reasons"] == ["size: x"]
    assert "model_int8.tflite" not in manifest["files"]
    assert manifest["gate_metrics"]["note"] == "no model_evaluation input"
    # Without the optional ExampleGen input the lineage says so: no spans, no examples.
    assert manifest["lineage"]["spans"] == [] and manifest["lineage"]["examples"] == []


def _fake_report_fields() -> dict:
    return dict(
        variant="int8",
        quantization="q",
        bytes=1,
        sha256="0" * 64,
        latency_ms=1.0,
        io={},
        parity_max_abs_diff=0.0,
        parity_tolerance=None,
        golden_count=0,
        eval_count=0,
        agreement=1.0,
        recall={},
        savedmodel_recall={},
        passed=True,
        reasons=(),
    )


def test_repush_of_the_same_model_is_a_noop(artifacts):
    bucket = f"memory://pusher-{uuid.uuid4().hex}"
    first = _run(artifacts, bucket, name="first")
    assert_pushed(first)
    with mock.patch.object(build, "convert_many") as convert:
        second = _run(artifacts, bucket, name="second")
    convert.assert_not_called()
    assert_pushed(second)
    assert second.get_string_custom_property("pushed_version") == first.get_string_custom_property("pushed_version")
    assert "already published" in second.get_string_custom_property("pushed_reason")
    assert len(versions.list_versions(bucket, "shelf_audit")) == 1


def test_component_validates_arguments_at_construction():
    channels = dict(
        model=channel_utils.as_channel([standard_artifacts.Model()]),
        model_blessing=channel_utils.as_channel([standard_artifacts.ModelBlessing()]),
        transformed_examples=channel_utils.as_channel([standard_artifacts.Examples()]),
    )
    settings = PushSettings(variants=("fp16", "int8", "dynamic"))
    pusher = TFLitePusher(**channels, bucket="gs://b/models", settings=settings)
    assert json.loads(pusher.exec_properties[push_settings.VARIANTS_KEY]) == ["fp16", "int8", "dynamic"]
    assert pusher.outputs[ex.PUSHED_MODEL_KEY].type == standard_artifacts.PushedModel
    # The executor reads back exactly the settings the component was given.
    assert PushSettings.from_exec_properties(pusher.exec_properties) == dataclasses.replace(
        settings, bucket="gs://b/models"
    )
    with pytest.raises(ValueError, match="push.default_variant must be one of push.variants"):
        PushSettings(variants=("int8",), default_variant="fp16")
    with pytest.raises(ValueError, match="push.variants must be a non-empty subset"):
        PushSettings(variants=("fp16", "int4"))
    with pytest.raises(ValueError, match="bucket"):
        TFLitePusher(**channels, bucket="")
    with pytest.raises(ValueError, match="damaged_recall_tolerance"):
        PushSettings(damaged_recall_tolerance=-0.1)
    with pytest.raises(ValueError, match="push.model_name must be a plain folder name"):
        PushSettings(model_name="../x")
