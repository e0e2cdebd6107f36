"""The `tasks` TFLite variant (RGB uint8 in, gray inside, metadata) on the tiny brightness classifier.

The tiny model's classes follow the mean gray level m (0..1): ok below 0.25,
misplaced between, damaged above 0.75 (tests/support/tflite_helpers.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from support import tflite_helpers as helpers

from shelf_data.contract import LABELS
from shelf_model.preprocessing import GRAY_COEFFICIENTS
from shelf_tflite import build, convert, runtime, variants, verify
from shelf_tflite import metadata as tflite_metadata
from shelf_tflite import tasks as tv

pytestmark = pytest.mark.component


@pytest.fixture(scope="module", params=["serving_rgb", "wrapper"])
def saved_model(request, tmp_path_factory) -> str:
    """The tiny model as the Trainer exports it now (with ``serving_rgb``), and as older models were (without)."""
    rgb = request.param == "serving_rgb"
    return helpers.build_tiny_saved_model(str(tmp_path_factory.mktemp("tiny") / "Format-Serving"), rgb=rgb)


@pytest.fixture(scope="module")
def tasks_model(saved_model) -> bytes:
    return build.convert(saved_model, "tasks")


@pytest.fixture(scope="module")
def fp16_model(saved_model) -> bytes:
    return build.convert(saved_model, "fp16")


def _run_rgb(model: bytes, rgb: np.ndarray) -> np.ndarray:
    """Feed uint8 RGB frames straight to the interpreter, as MediaPipe does."""
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for frame in np.asarray(rgb, np.uint8):
        interpreter.set_tensor(inp["index"], frame[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def _colour_frames(count: int, seed: int) -> np.ndarray:
    """RGB frames of every class: a per-frame tint plus per-pixel noise, channels differing."""
    rng = np.random.default_rng(seed)
    base = np.array([25, 128, 230])[np.arange(count) % 3].reshape(-1, 1, 1, 1)
    tint = rng.integers(-40, 41, size=(count, 1, 1, 3))
    noise = rng.integers(-20, 21, size=(count, 128, 128, 3))
    return np.clip(base + tint + noise, 0, 255).astype(np.uint8)


def test_variant_is_built_by_default_but_never_the_default_variant():
    assert "tasks" in variants.VARIANTS
    assert variants.DEFAULT_PARITY_TOLERANCES["tasks"] == variants.DEFAULT_PARITY_TOLERANCES["fp16"] == 1e-2
    assert variants.DEFAULT_VARIANTS == ("fp16", "int8", "tasks") and variants.DEFAULT_VARIANT == "fp16"
    assert "RGB uint8 input" in variants.QUANTIZATION["tasks"] and "MediaPipe" in variants.QUANTIZATION["tasks"]


def test_input_is_rgb_uint8_and_output_float_probabilities(tasks_model):
    io = runtime.describe_io(tasks_model)
    assert io["input"]["dtype"] == "uint8" and io["input"]["shape"] == [1, 128, 128, 3]
    assert io["output"]["dtype"] == "float32" and io["output"]["shape"] == [1, 3]
    assert runtime.input_image_shape(tasks_model) == (128, 128, 3)
    # Builtin ops only; the gray conversion is in the graph (cast, BT.601 weighted sum, round).
    interpreter = Interpreter(
        model_content=tasks_model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}  # LiteRT has no public op listing
    assert not any(name.startswith("Flex") or name == "CUSTOM" for name in ops), ops
    assert {"CAST", "ROUND", "CONV_2D"} <= ops, ops
    # fp16 weights, dequantized to float32 for compute, like the fp16 variant.
    assert "DEQUANTIZE" in ops and any(t["dtype"] == np.float16 for t in interpreter.get_tensor_details())


def test_metadata_is_what_the_image_classifier_writers_wrote(tasks_model):
    golden = json.loads((Path(__file__).parent / "data" / "tasks_metadata.json").read_text())
    assert tflite_metadata.read_metadata(tasks_model)["metadata"] == golden


def test_metadata_holds_labels_rgb_and_raw_pixel_normalisation(tasks_model, saved_model):
    read = tflite_metadata.read_metadata(tasks_model)
    assert read["labels"] == list(LABELS)
    assert read["associated_files"] == [tv.LABEL_FILE]
    meta = read["metadata"]
    assert meta["name"] == "Shelf audit classifier: ok / misplaced / damaged"
    assert "gray" in meta["description"] and "inside the model" in meta["description"]
    subgraph = meta["subgraph_metadata"][0]
    (image,) = subgraph["input_tensor_metadata"]
    assert image["content"]["content_properties_type"] == "ImageProperties"
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    (normalisation,) = image["process_units"]
    assert normalisation["options_type"] == "NormalizationOptions"
    assert normalisation["options"] == {"mean": [0.0], "std": [1.0]}
    assert image["stats"] == {"max": [255.0], "min": [0.0]}
    (output,) = subgraph["output_tensor_metadata"]
    assert output["name"] == "probabilities"
    assert [(f["name"], f["type"]) for f in output["associated_files"]] == [(tv.LABEL_FILE, "TENSOR_AXIS_LABELS")]
    # The gray variants carry no metadata.
    assert tflite_metadata.read_metadata(build.convert(saved_model, "fp32")) == {
        "metadata": {},
        "associated_files": [],
        "labels": [],
    }


def test_rgb_module_equals_saved_model_on_bt601_gray(saved_model):
    frames = _colour_frames(6, seed=4)
    module = tv.rgb_module(saved_model)
    got = np.concatenate([module.serve(tf.constant(f[None]))["probabilities"].numpy() for f in frames])
    expected = convert.saved_model_predict(saved_model, tv.gray_of_rgb(frames))
    # Same graph in float32; only a pixel whose luma sits at x.5 may round the other way
    # (summation order), one gray level on one of 16,384 pixels: ~1e-6.
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_rgb_frames_match_the_saved_model_on_their_gray(tasks_model, saved_model):
    frames = _colour_frames(12, seed=5)
    got = _run_rgb(tasks_model, frames)
    expected = convert.saved_model_predict(saved_model, tv.gray_of_rgb(frames))
    assert np.max(np.abs(got - expected)) <= 1e-2
    assert (got.argmax(1) == expected.argmax(1)).all() and set(expected.argmax(1)) == {0, 1, 2}
    # run_tflite passes colour frames through unchanged.
    np.testing.assert_allclose(runtime.run_tflite(tasks_model, frames), got, atol=1e-6)


def test_gray_replicated_to_rgb_matches_the_gray_fp16_variant(tasks_model, fp16_model, saved_model):
    images, _ = helpers.make_images(12, seed=6)
    rgb = np.repeat(images, 3, axis=-1)
    np.testing.assert_array_equal(tv.gray_of_rgb(rgb), images.astype(np.float32))
    via_rgb = _run_rgb(tasks_model, rgb)
    gray_fp16 = runtime.run_tflite(fp16_model, images)
    assert np.max(np.abs(via_rgb - gray_fp16)) <= 1e-2
    assert np.max(np.abs(via_rgb - convert.saved_model_predict(saved_model, images))) <= 1e-2
    # run_tflite feeds our gray images to the RGB model by repeating the channel.
    np.testing.assert_allclose(runtime.run_tflite(tasks_model, images), via_rgb, atol=1e-6)


@pytest.mark.parametrize(
    ("rgb", "bt601_class", "mean_class"),
    [
        # Blue: BT.601 gray 29 (m 0.11, ok); a plain channel mean would be 85 (m 0.33, misplaced).
        ((0, 0, 255), "ok", "misplaced"),
        # Yellow: BT.601 gray 226 (m 0.89, damaged); a plain channel mean would be 170 (misplaced).
        ((255, 255, 0), "damaged", "misplaced"),
        # Light green: BT.601 gray 212 (m 0.83, damaged); a plain channel mean would be 185 (m 0.73, misplaced).
        ((150, 255, 150), "damaged", "misplaced"),
    ],
)
def test_colours_are_converted_with_the_bt601_coefficients(tasks_model, saved_model, rgb, bt601_class, mean_class):
    frame = np.broadcast_to(np.array(rgb, np.uint8), (1, 128, 128, 3))
    gray = round(float(np.dot(rgb, GRAY_COEFFICIENTS)))
    expected = convert.saved_model_predict(saved_model, np.full((1, 128, 128, 1), gray, np.float32))
    plain_mean = convert.saved_model_predict(saved_model, np.full((1, 128, 128, 1), round(np.mean(rgb)), np.float32))
    assert LABELS[int(expected.argmax())] == bt601_class
    assert LABELS[int(plain_mean.argmax())] == mean_class  # the frame tells the two conversions apart
    got = _run_rgb(tasks_model, frame)
    assert LABELS[int(got.argmax())] == bt601_class
    assert np.max(np.abs(got - expected)) <= 1e-2


def test_verify_variant_and_latency_work_on_gray_eval_images(tasks_model, saved_model):
    images, labels = helpers.make_images(24, seed=7)
    reference = convert.saved_model_predict(saved_model, images)
    config = verify.VerifyConfig(latency_repeats=5)
    report = helpers.verify_on(
        tasks_model, "tasks", (images, labels, reference), (images[:6], reference[:6]), config=config
    )
    assert report.passed, report.reasons
    assert report.parity_tolerance == 1e-2 and report.agreement == 1.0
    assert report.quantization == variants.QUANTIZATION["tasks"]
    assert report.io["input"]["dtype"] == "uint8" and report.io["input"]["shape"] == [1, 128, 128, 3]
    assert 0 < runtime.measure_latency_ms(tasks_model, repeats=3) < 1000


def test_add_metadata_rejects_bad_labels(tasks_model):
    with pytest.raises(ValueError, match="labels"):
        tv.add_metadata(tasks_model, labels=[])
    with pytest.raises(ValueError, match="labels"):
        tv.add_metadata(tasks_model, labels=["ok", "two\nlines"])


def test_add_metadata_rejects_a_model_that_is_not_rgb_uint8(fp16_model, tasks_model):
    with pytest.raises(ValueError, match="takes RGB uint8 images"):
        tv.add_metadata(fp16_model)
    with pytest.raises(ValueError, match=r"outputs float32 \[1, 4\], one score per label"):
        tv.add_metadata(tasks_model, labels=["a", "b", "c", "d"])


def test_converted_from_the_rgb_signature_when_the_model_exports_it(tmp_path):
    with_rgb = helpers.build_tiny_saved_model(str(tmp_path / "rgb"), rgb=True)
    without = helpers.build_tiny_saved_model(str(tmp_path / "gray"))
    assert "serving_rgb" in tv.signature_keys(with_rgb) and tv.signature_keys(without) == {"serving_image"}
    wrapped = build.convert(without, "tasks")
    with mock.patch.object(tv, "rgb_module", side_effect=AssertionError("wrapper traced")) as wrapper:
        direct = build.convert(with_rgb, "tasks")
        wrapper.assert_not_called()  # serving_rgb converted as it is
        with pytest.raises(AssertionError, match="wrapper traced"):
            build.convert(without, "tasks")
    # Both ways give the same model: same input, metadata and outputs on colour frames.
    assert (
        runtime.describe_io(direct)["input"]["shape"]
        == runtime.describe_io(wrapped)["input"]["shape"]
        == [1, 128, 128, 3]
    )
    assert (
        tflite_metadata.read_metadata(direct)["labels"]
        == tflite_metadata.read_metadata(wrapped)["labels"]
        == list(LABELS)
    )
    frames = _colour_frames(9, seed=8)
    np.testing.assert_allclose(_run_rgb(direct, frames), _run_rgb(wrapped, frames), atol=1e-6)


def test_a_loaded_saved_model_is_reused_for_the_rgb_signature(tmp_path):
    with_rgb = helpers.build_tiny_saved_model(str(tmp_path / "rgb"), rgb=True)
    fresh = tv._convert_rgb(with_rgb, None, "serving_image")
    loaded = convert.load_saved_model(with_rgb)
    with mock.patch.object(tf.saved_model, "load", side_effect=AssertionError("loaded again")):
        assert tv._convert_rgb(with_rgb, None, "serving_image", loaded) == fresh
        tasks = tv.convert_tasks(with_rgb, loaded=loaded)
    # The metadata and the packed label file add the same bytes every time.
    assert tasks == tv.add_metadata(fresh)
    assert tflite_metadata.read_metadata(tasks)["labels"] == list(LABELS)
