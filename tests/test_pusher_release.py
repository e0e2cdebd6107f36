"""Component tests of the pusher's steps: verification, release assembly (camera goldens) and the live gate in Do."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support import tflite_helpers as helpers
from tfx.dsl.components.base import base_executor
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import standard_artifacts

from bucket import layout, publish, versions
from bucket import verify as bucket_verify
from components.tflite_pusher import executor as ex
from components.tflite_pusher import release, verification
from components.tflite_pusher import settings as push_settings
from shelf_data import contract
from shelf_model import preprocessing
from shelf_tflite import build, convert, runtime, verify

pytestmark = pytest.mark.component

# Mean brightness per class for the tiny model (dark = ok, mid = misplaced, bright = damaged).
_BRIGHTNESS = (25, 128, 230)


def _frame(label: int, size: tuple[int, int], mode: str = "RGB", fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A camera-like frame of one class: a colour cast around the class's brightness, plus noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    tint = np.array([1.15, 0.95, 0.85], np.float32)  # R, G, B differ: a colour frame
    pixels = _BRIGHTNESS[label] * tint + rng.normal(0, 8, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _raw_example(image: bytes, label: int) -> bytes:
    feature = {
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _raw_examples(root: str) -> standard_artifacts.Examples:
    """ExampleGen's raw eval split: per class a gray JPEG, a PNG, then RGB JPEGs of two sizes."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "ImportExampleGen", "examples", "1")
    examples.id = 101
    split = os.path.join(examples.uri, "Split-eval")
    tf.io.gfile.makedirs(split)
    with tf.io.TFRecordWriter(os.path.join(split, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for label in range(3):
            writer.write(_raw_example(_frame(label, (320, 240), mode="L"), label))
            writer.write(_raw_example(_frame(label, (320, 240), fmt="PNG"), label))
            for i, size in enumerate([(320, 240), (240, 320), (200, 150)]):
                writer.write(_raw_example(_frame(label, size, seed=10 * label + i), label))
    return examples


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("release"))
    model = helpers.make_model_artifact(root)
    examples = helpers.make_examples(root)
    model_path = os.path.join(model.uri, "Format-Serving")
    data = verification.load_eval_data(model_path, examples, representative_count=20, golden_count=3)
    return {"root": root, "model": model, "examples": examples, "model_path": model_path, "data": data}


def test_load_eval_data_and_convert_and_verify(world):
    data = world["data"]
    assert data.images.shape == (30, 128, 128, 1) and data.images.dtype == np.uint8
    assert len(data.representative) == 20 and sorted(data.golden_labels.tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(np.argmax(data.reference, axis=1), data.labels)  # the tiny model is right
    verified = verification.convert_and_verify(world["model_path"], ["fp32", "int8"], data, verify.VerifyConfig())
    assert list(verified.blobs) == ["fp32", "int8"] and verified.passed("fp32") and verified.passed("int8")
    assert verified.reports["int8"].eval_count == 30
    # Each variant's eval outputs are kept for the live gate, and they are what the report was computed from.
    for variant in ("fp32", "int8"):
        outputs = verified.eval_outputs[variant]
        np.testing.assert_array_equal(outputs, runtime.run_tflite(verified.blobs[variant], data.images))
        agreement = float(np.mean(outputs.argmax(1) == data.reference.argmax(1)))
        assert verified.reports[variant].agreement == pytest.approx(agreement)


def test_a_loaded_saved_model_is_used_as_it_is(world):
    loaded = convert.load_saved_model(world["model_path"])
    assert convert.load_saved_model(loaded) is loaded
    data = world["data"]
    np.testing.assert_allclose(convert.saved_model_predict(loaded, data.images), data.reference, atol=1e-6)
    # A folder given as a path object is loaded, as tf.saved_model.load does with it.
    np.testing.assert_allclose(
        convert.saved_model_predict(Path(world["model_path"]), data.images), data.reference, atol=1e-6
    )
    # verify_variant takes outputs already computed instead of running the model again: wrong ones show.
    blob = build.convert(world["model_path"], "fp32")
    wrong = np.roll(data.reference, 1, axis=1)
    evaluation, golden = (data.images, data.labels, data.reference), (data.golden_images, data.golden_reference)
    report = helpers.verify_on(blob, "fp32", evaluation, golden, eval_outputs=wrong)
    assert report.agreement == 0.0 and not report.passed


def test_pick_camera_frames_takes_rgb_jpegs_per_class_in_file_order(tmp_path):
    examples = _raw_examples(str(tmp_path))
    frames = release.pick_camera_frames(examples.uri, per_class=2)
    assert [label for _, label, _ in frames] == [0, 0, 1, 1, 2, 2]
    assert [record for record, _, _ in frames][:2] == [
        "data_tfrecord-00000-of-00001.gz#2",
        "data_tfrecord-00000-of-00001.gz#3",
    ]
    for _, _, jpeg in frames:
        assert jpeg.startswith(b"\xff\xd8") and tf.io.extract_jpeg_shape(jpeg).numpy()[-1] == 3
    assert release.pick_camera_frames(str(tmp_path / "nowhere"), per_class=2) == []


def _release(world, tmp_path, variants=("fp16", "int8")):
    verified = verification.convert_and_verify(
        world["model_path"], list(variants), world["data"], verify.VerifyConfig()
    )
    files, entries = release.model_files(verified, variants[0])
    frames = release.pick_camera_frames(_raw_examples(str(tmp_path)).uri, per_class=2)
    camera = release.camera_golden_files(frames, world["model_path"], files, variants[0], 128)
    return verified, files, entries, camera


def test_camera_goldens_hold_whole_frames_and_each_models_outputs_by_the_contract(world, tmp_path):
    _, files, _, camera = _release(world, tmp_path)
    index = json.loads(camera["camera.json"])
    assert len(index["samples"]) == 6 and index["preprocessing"] == preprocessing.preprocessing_contract(128)
    assert set(index["inputs"]) == {"model.tflite", "model_fp16.tflite", "model_int8.tflite"}
    assert index["tolerance"]["model_int8.tflite"] == release.INT8_TOLERANCE
    for sample in index["samples"]:
        jpeg = camera[sample["file"]]
        height, width, _ = tf.io.extract_jpeg_shape(jpeg).numpy()
        assert sample["size"] == [int(width), int(height)] and sample["channels"] == 3
        # The SavedModel on Transform's preprocessing of the frame: right class, as the variants are.
        assert int(np.argmax(sample["savedmodel"])) == sample["label"]
        gray = preprocessing.camera_frame_input(jpeg, 1).numpy()[None]
        expected = runtime.run_tflite(files["model_fp16.tflite"], gray)[0]
        np.testing.assert_allclose(sample["expected"]["model_fp16.tflite"], expected, atol=1e-6)
        assert int(np.argmax(sample["expected"]["model_int8.tflite"])) == sample["label"]


def test_published_camera_goldens_replay_and_a_wrong_expectation_is_caught(world, tmp_path):
    verified, files, entries, camera = _release(world, tmp_path)
    golden = {**release.golden_files(files, world["data"], "fp16"), **camera}
    bucket = str(tmp_path / "bucket")
    manifest = publish.build_manifest(
        model_name="m",
        default_variant="fp16",
        variants=entries,
        labels=contract.LABELS,
        gate_metrics={},
        lineage={},
        image_shape=(128, 128, 1),
    )
    result = publish.publish(bucket, "m", files, manifest, golden=golden)
    assert bucket_verify.verify_version(bucket, "m").ok
    # Tamper with one expected output (and re-record the checksum, as a bad publisher would): replay fails.
    index = json.loads(camera["camera.json"])
    index["samples"][0]["expected"]["model_fp16.tflite"] = [1.0, 0.0, 0.0][::-1]
    golden["camera.json"] = json.dumps(index).encode()
    bucket2 = str(tmp_path / "bucket2")
    publish.publish(bucket2, "m", files, manifest, golden=golden)
    problems = bucket_verify.verify_version(bucket2, "m").problems
    assert any("model_fp16.tflite: camera golden outputs differ" in p for p in problems), problems
    assert result.version


def test_a_variant_worse_than_live_is_recorded_not_shipped(world, tmp_path):
    verified = verification.convert_and_verify(
        world["model_path"], ["fp16", "int8"], world["data"], verify.VerifyConfig()
    )
    live = {
        "fp16": {"status": "compared", "passed": True, "reasons": []},
        "int8": {"status": "compared", "passed": False, "reasons": ["recall of damaged dropped by 0.2"]},
    }
    files, entries = release.model_files(verified, "fp16", live)
    assert "model_int8.tflite" not in files and "model_fp16.tflite" in files and "model.tflite" in files
    assert entries["int8"]["published"] is False and entries["int8"]["file"] is None
    assert entries["int8"]["reasons"] == ["vs live: recall of damaged dropped by 0.2"]
    assert entries["fp16"]["live_comparison"]["passed"] is True


# -- the live gate inside Do -----------------------------------------------------------------


def _push(world, bucket: str, model, name: str, **props):
    inputs = {
        ex.MODEL_KEY: [model],
        ex.MODEL_BLESSING_KEY: [helpers.make_blessing(os.path.join(world["root"], name), True)],
        ex.TRANSFORMED_EXAMPLES_KEY: [world["examples"]],
        ex.EXAMPLES_KEY: [world["raw"]],
    }
    pushed = helpers.make_pushed_model(world["root"], name)
    context = base_executor.BaseExecutor.Context(
        pipeline_info=pipeline_pb2.PipelineInfo(id="shelf-audit"), pipeline_run_id=f"run-{name}"
    )
    properties = {
        push_settings.BUCKET_KEY: bucket,
        push_settings.VARIANTS_KEY: json.dumps(["fp16"]),
        push_settings.DEFAULT_VARIANT_KEY: "fp16",
        push_settings.GOLDEN_COUNT_KEY: 3,
        push_settings.REPRESENTATIVE_COUNT_KEY: 20,
        **props,
    }
    ex.Executor(context).Do(inputs, {ex.PUSHED_MODEL_KEY: [pushed]}, properties)
    return pushed


def test_do_compares_with_live_and_refuses_a_worse_default(world, tmp_path):
    world = {**world, "raw": _raw_examples(str(tmp_path))}
    bucket = str(tmp_path / "bucket")
    first = _push(world, bucket, world["model"], "first")
    assert first.get_int_custom_property("pushed") == 1, first.get_string_custom_property("pushed_reason")
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert manifest["live_gate"]["variants"]["fp16"]["status"] == "no_live_model"
    assert "first release" in first.get_string_custom_property("pushed_live_gate")
    assert manifest["preprocessing"]["resize"]["antialias"] is True
    folder = layout.version_dir(bucket, "shelf_audit", manifest["version"])
    with open(os.path.join(folder, "golden", "camera.json"), encoding="utf-8") as f:
        assert len(json.load(f)["samples"]) == 6

    # A model that calls every mid-gray shelf "misplaced" even when it is dark: worse than live on "ok".
    worse = helpers.make_model_artifact(os.path.join(world["root"], "worse"), bias_shift=4.0)
    second = _push(world, bucket, worse, "worse")
    assert second.get_int_custom_property("pushed") == 0
    reason = second.get_string_custom_property("pushed_reason")
    assert reason.startswith("default variant fp16 is worse than the live model " + manifest["version"]), reason
    assert versions.read_latest(bucket, "shelf_audit") == manifest["version"]

    # The same model with the live gate off is published (and the manifest says the gate was off).
    third = _push(world, bucket, worse, "worse-off", **{push_settings.LIVE_GATE_KEY: json.dumps({"enabled": False})})
    assert third.get_int_custom_property("pushed") == 1, third.get_string_custom_property("pushed_reason")
    latest = versions.read_manifest(bucket, "shelf_audit")
    assert latest["live_gate"]["enabled"] is False and latest["live_gate"]["variants"]["fp16"]["status"] == "disabled"


def test_camera_goldens_that_cannot_be_made_do_not_block_the_release(world, tmp_path, monkeypatch, caplog):
    world = {**world, "raw": _raw_examples(str(tmp_path))}

    def broken(*args):
        raise ValueError("a frame the contract cannot decode")

    monkeypatch.setattr(release, "camera_goldens", broken)
    bucket = str(tmp_path / "bucket")
    pushed = _push(world, bucket, world["model"], "no-camera")
    assert pushed.get_int_custom_property("pushed") == 1, pushed.get_string_custom_property("pushed_reason")
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert not any(name.startswith("golden/camera") for name in manifest["files"])
    assert "a frame the contract cannot decode" in caplog.text
