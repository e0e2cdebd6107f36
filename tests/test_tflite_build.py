"""Unit tests of shelf_tflite's conversion, runtime, verification and eval data on a tiny brightness classifier."""

from __future__ import annotations

import os
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from support import tflite_helpers as helpers

from shelf_tflite import build, convert, eval_data, runtime, variants, verify

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> str:
    return helpers.build_tiny_saved_model(str(tmp_path_factory.mktemp("tiny") / "Format-Serving"))


@pytest.fixture(scope="module")
def data():
    images, labels = helpers.make_images(30, seed=3)
    return images, labels


@pytest.fixture(scope="module")
def converted(saved_model, data) -> dict[str, bytes]:
    images, _ = data
    return {v: build.convert(saved_model, v, representative_images=images) for v in variants.VARIANTS}


@pytest.fixture(scope="module")
def reference(saved_model, data) -> np.ndarray:
    return convert.saved_model_predict(saved_model, data[0])


@pytest.mark.parametrize("order", [("int8", "fp32", "dynamic", "tasks", "fp16"), ("fp16", "dynamic", "int8")])
def test_one_converter_for_many_variants_gives_each_variant_s_own_bytes(saved_model, data, converted, order):
    # Options must not leak from one variant to the next (int8 first sets them all).
    many = build.convert_many(saved_model, list(order), representative_images=data[0])
    assert list(many) == list(order)
    for variant in order:
        if variant == "tasks":  # its own conversion (not shared); traced anew, so names may differ: compare outputs
            np.testing.assert_array_equal(
                runtime.run_tflite(many[variant], data[0]), runtime.run_tflite(converted[variant], data[0])
            )
        else:
            assert many[variant] == converted[variant], variant


def test_a_loaded_saved_model_is_reused_not_loaded_again_and_gives_the_same_bytes(saved_model, data, converted):
    loaded = convert.load_saved_model(saved_model)
    with mock.patch.object(tf.saved_model, "load", side_effect=AssertionError("loaded again")):
        with mock.patch.object(tf.lite.TFLiteConverter, "from_saved_model", side_effect=AssertionError("loaded again")):
            many = build.convert_many(saved_model, ["fp16", "int8"], representative_images=data[0], loaded=loaded)
    assert many == {"fp16": converted["fp16"], "int8": converted["int8"]}


def test_the_loaded_saved_model_must_have_the_signature(saved_model):
    with pytest.raises(ValueError, match="'serving_rgb' not in the SavedModel"):
        convert.saved_model_converter(saved_model, "serving_rgb", convert.load_saved_model(saved_model))


@pytest.mark.parametrize("variant", ["int8", "tasks"])
def test_inputs_are_prepared_a_chunk_at_a_time_with_the_same_outputs(converted, variant):
    # More images than one chunk: the outputs around the boundary are those of single runs.
    images, _ = helpers.make_images(runtime._INPUT_CHUNK + 9, seed=5)
    outputs = runtime.run_tflite(converted[variant], images)
    assert outputs.shape == (len(images), 3)
    for i in (0, runtime._INPUT_CHUNK - 1, runtime._INPUT_CHUNK, len(images) - 1):
        np.testing.assert_array_equal(outputs[i], runtime.run_tflite(converted[variant], images[i : i + 1])[0])


def test_convert_many_needs_calibration_images_before_converting_anything(saved_model):
    with pytest.raises(ValueError, match="representative_images"):
        build.convert_many(saved_model, ["fp16", "int8"])
    with pytest.raises(ValueError, match="variant must be one of"):
        build.convert_many(saved_model, ["fp16", "int4"])


@pytest.mark.parametrize("variant", variants.VARIANTS)
def test_each_variant_loads_and_runs(converted, data, reference, variant):
    out = runtime.run_tflite(converted[variant], data[0])
    assert out.shape == (30, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.02)
    assert np.mean(out.argmax(1) == reference.argmax(1)) == 1.0


def test_fp32_matches_saved_model(converted, data, reference):
    assert np.max(np.abs(runtime.run_tflite(converted["fp32"], data[0]) - reference)) <= 1e-5


def test_int8_takes_raw_uint8_pixels_and_returns_float_probabilities(converted):
    io = runtime.describe_io(converted["int8"])
    assert io["input"]["dtype"] == "uint8"
    assert (io["input"]["scale"], io["input"]["zero_point"]) == (1.0, 0)
    assert io["input"]["shape"] == [1, 128, 128, 1]
    assert io["output"]["dtype"] == "float32" and io["output"]["shape"] == [1, 3]
    # Float variants keep a float32 input.
    assert runtime.describe_io(converted["fp16"])["input"]["dtype"] == "float32"


def test_int8_input_scale_is_one_even_for_dark_calibration_data(saved_model):
    dark = np.full((4, *helpers.IMAGE_SHAPE), 40, np.uint8)
    io = runtime.describe_io(build.convert(saved_model, "int8", representative_images=dark))
    assert (io["input"]["scale"], io["input"]["zero_point"]) == (1.0, 0)


def test_bad_arguments(saved_model):
    with pytest.raises(ValueError, match="variant must be one of"):
        build.convert(saved_model, "int4")
    with pytest.raises(ValueError, match="representative_images"):
        build.convert(saved_model, "int8")


def test_verify_variant_passes_and_records_everything(converted, data, reference):
    images, labels = data
    report = helpers.verify_on(converted["fp16"], "fp16", (images, labels, reference), (images[:6], reference[:6]))
    assert report.passed and report.reasons == ()
    assert report.parity_tolerance == 1e-2 and report.parity_max_abs_diff <= 1e-2
    assert report.agreement == 1.0 and report.recall["damaged"] == 1.0
    assert report.bytes == len(converted["fp16"]) and len(report.sha256) == 64
    assert report.latency_ms > 0 and report.golden_count == 6 and report.eval_count == 30
    assert report.to_dict()["io"]["input"]["dtype"] == "float32"


def test_verify_variant_rejects_damaged_recall_drift(converted, data):
    images, labels = data
    # Pretend the SavedModel called some dark (ok-looking) photos damaged,
    # correctly: the variant, which says ok, loses damaged recall.
    labels = labels.copy()
    labels[[0, 3, 6]] = 2
    reference = np.eye(3, dtype=np.float32)[labels]
    report = helpers.verify_on(converted["int8"], "int8", (images, labels, reference), (images[:3], reference[:3]))
    assert not report.passed
    assert any(r.startswith("drift: damaged recall") for r in report.reasons)
    assert report.savedmodel_recall["damaged"] == 1.0 and report.recall["damaged"] < 0.98


def test_verify_variant_budgets_and_parity(converted, data, reference):
    images, labels = data
    config = verify.VerifyConfig(size_budget_bytes=100, latency_budget_ms=1e-9, latency_repeats=3)
    golden = (images[:3], reference[:3] + 0.1)
    report = helpers.verify_on(converted["fp32"], "fp32", (images, labels, reference), golden, config=config)
    kinds = sorted(r.split(":")[0] for r in report.reasons)
    assert kinds == ["latency", "parity", "size"]


def test_measure_latency(converted):
    assert 0 < runtime.measure_latency_ms(converted["fp16"], num_threads=2, repeats=5) < 1000


def test_load_images_round_trip(tmp_path):
    images, labels = helpers.make_images(7, seed=9)
    helpers.write_split(str(tmp_path / "Split-eval"), images, labels)
    got_images, got_labels = eval_data.load_images(str(tmp_path / "Split-eval"))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert len(eval_data.load_images(str(tmp_path / "Split-eval"), limit=3)[0]) == 3
    with pytest.raises(FileNotFoundError):
        eval_data.load_images(os.path.join(tmp_path, "missing"))


def test_sample_split_is_a_deterministic_uniform_subset(tmp_path):
    images, labels = helpers.make_images(40, seed=3)
    helpers.write_split(str(tmp_path / "Split-train"), images, labels)
    split = str(tmp_path / "Split-train")
    sample = eval_data.sample_split(split, 10, seed=1)
    assert sample.shape == (10, *images.shape[1:]) and sample.dtype == np.uint8
    flat = images.reshape(40, -1)
    picked = [int(np.flatnonzero((flat == s.reshape(-1)).all(axis=1))[0]) for s in sample]
    assert len(set(picked)) == 10  # ten distinct images of the split
    assert max(picked) >= 10  # not just the first ten read
    np.testing.assert_array_equal(eval_data.sample_split(split, 10, seed=1), sample)
    assert not np.array_equal(eval_data.sample_split(split, 10, seed=2), sample)
    # Fewer images than asked: all of them, in file order.
    np.testing.assert_array_equal(eval_data.sample_split(split, 100), images)
    with pytest.raises(FileNotFoundError):
        eval_data.sample_split(str(tmp_path / "missing"), 3)


def test_golden_selection_covers_every_class():
    labels = np.array([0] * 20 + [1] * 5 + [2] * 2)
    chosen = eval_data.select_golden_indices(labels, 6)
    assert len(chosen) == 6 and set(labels[chosen]) == {0, 1, 2}
    assert eval_data.select_golden_indices(labels[:2], 8) == [0, 1]


def test_per_class_recall_marks_absent_classes():
    recall = verify.per_class_recall(np.array([0, 0, 1]), np.eye(3)[[0, 1, 1]])
    assert recall == {"ok": 0.5, "misplaced": 1.0, "damaged": None}
