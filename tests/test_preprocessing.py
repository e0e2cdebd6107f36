"""Unit tests of the Transform code: decoding, resizing, pixel serialization and ``preprocessing_fn``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from shelf_data import contract
from shelf_model import features
from shelf_model import preprocessing as pp

pytestmark = pytest.mark.unit

SIZE = pp.DEFAULT_IMAGE_SIZE


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _solid(mode: str, size: tuple[int, int], rgb: tuple[int, int, int], fmt: str) -> bytes:
    image = Image.new("RGB", size, rgb)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(128)
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return _encode(image, fmt)


def _decode(data: bytes, size: int = SIZE) -> np.ndarray:
    return pp.decode_and_resize(tf.constant(data), size).numpy()


# --- decode_and_resize -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "size", "fmt"),
    [
        ("L", (300, 97), "JPEG"),
        ("RGB", (64, 64), "JPEG"),
        ("RGB", (500, 500), "PNG"),
        ("RGBA", (300, 97), "PNG"),
        ("P", (64, 64), "PNG"),
        ("L", (97, 300), "PNG"),
    ],
)
def test_any_encoding_becomes_uint8_gray_square_0_255(make_image, mode, size, fmt):
    out = _decode(make_image(mode, size, fmt, seed=1))
    assert out.shape == (SIZE, SIZE, 1)
    assert out.dtype == np.uint8
    # The photo is a 0..200 ramp plus noise: pixels stay on the 0..255 scale, not 0..1.
    assert out.max() > 150 and out.min() < 80
    assert out.std() > 20


@pytest.mark.parametrize(("mode", "fmt"), [("L", "JPEG"), ("L", "PNG"), ("RGB", "PNG")])
def test_uniform_gray_keeps_its_value(mode, fmt):
    out = _decode(_solid(mode, (300, 97), (200, 200, 200), fmt))
    assert np.abs(out.astype(int) - 200).max() <= 1


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "JPEG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG")])
def test_color_becomes_its_luma(mode, fmt):
    # ITU-R 601 luma: 0.299 R + 0.587 G + 0.114 B.
    red = _decode(_solid(mode, (97, 300), (255, 0, 0), fmt))
    assert np.abs(red.astype(int) - 76).max() <= 2
    blue = _decode(_solid(mode, (64, 64), (0, 0, 255), fmt))
    assert np.abs(blue.astype(int) - 29).max() <= 2


def test_frame_is_stretched_not_cropped_or_transposed():
    # 300x97: the left third is black. Stretching keeps it as the left third; a centre crop would lose it.
    pixels = np.full((97, 300), 255, np.uint8)
    pixels[:, :100] = 0
    out = _decode(_encode(Image.fromarray(pixels, "L"), "PNG"))[..., 0]
    third = SIZE // 3
    assert out[:, : third - 3].max() <= 5
    assert out[:, third + 3 :].min() >= 250
    # Rows are all alike (nothing was transposed).
    assert np.abs(out - out[:1]).max() == 0


def test_other_output_size():
    assert _decode(_solid("RGB", (300, 97), (10, 20, 30), "JPEG"), size=64).shape == (64, 64, 1)


def test_undecodable_bytes_fail():
    with pytest.raises(tf.errors.InvalidArgumentError):
        _decode(b"definitely not an image")


# --- Pixel serialization ---------------------------------------------------------------


def test_serialize_and_parse_round_trip():
    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 1), dtype=np.uint8)
    serialized = pp.serialize_pixels(tf.constant(images))
    assert serialized.shape == (3,) and serialized.dtype == tf.string
    for i in range(3):
        parsed = pp.parse_pixels(serialized[i])
        assert parsed.dtype == tf.uint8
        np.testing.assert_array_equal(parsed.numpy(), images[i])
        # Small: the raw 16 KiB of uint8 pixels plus a short header.
        assert SIZE * SIZE <= len(serialized[i].numpy()) <= SIZE * SIZE + 64
    batch = pp.parse_pixels_batch(serialized)
    assert batch.dtype == tf.float32 and batch.shape == (3, SIZE, SIZE, 1)
    np.testing.assert_array_equal(batch.numpy(), images.astype(np.float32))


def test_parse_pixels_refuses_the_wrong_size():
    serialized = tf.io.serialize_tensor(tf.zeros([64, 64, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError):
        pp.parse_pixels(serialized, SIZE)


# --- preprocessing_fn (run eagerly on inputs shaped as TFT gives them) ---------------------


@pytest.fixture(scope="module")
def raw_images() -> list[bytes]:
    return [
        _solid("L", (64, 64), (200, 200, 200), "PNG"),
        _solid("RGB", (300, 97), (255, 0, 0), "JPEG"),
        _solid("RGBA", (500, 500), (0, 0, 255), "PNG"),
    ]


def _inputs(raw_images: list[bytes], with_label: bool = True, with_lighting: bool = True) -> dict:
    inputs = {
        contract.IMAGE_KEY: tf.constant([[data] for data in raw_images]),
        contract.LANE_KEY: tf.constant([[3], [40], [1]], tf.int64),
        contract.DEVICE_KEY: tf.constant([[b"tc52-a"], [b"ct40"], [b"tc52-b"]]),
    }
    if with_label:
        inputs[contract.LABEL_KEY] = tf.constant([[2], [0], [1]], tf.int64)
    if with_lighting:
        # Optional feature: sparse [batch, 1]; the second example has no lighting.
        inputs[contract.LIGHTING_KEY] = tf.SparseTensor(
            indices=[[0, 0], [2, 0]], values=tf.constant([b"bright", b"dim"]), dense_shape=[3, 1]
        )
    return inputs


def test_preprocessing_fn_outputs(raw_images):
    out = pp.preprocessing_fn(_inputs(raw_images))
    assert set(out) == {
        features.PIXELS_KEY,
        features.LABEL_KEY,
        features.LANE_KEY,
        features.DEVICE_KEY,
        features.LIGHTING_KEY,
    }
    for key, tensor in out.items():
        assert tensor.shape == (3,), key
    assert out[features.LABEL_KEY].dtype == tf.int64
    assert out[features.LABEL_KEY].numpy().tolist() == [2, 0, 1]
    assert out[features.LANE_KEY].numpy().tolist() == [3, 40, 1]
    assert out[features.DEVICE_KEY].numpy().tolist() == [b"tc52-a", b"ct40", b"tc52-b"]
    assert out[features.LIGHTING_KEY].numpy().tolist() == [b"bright", features.UNKNOWN_LIGHTING.encode(), b"dim"]
    pixels = pp.parse_pixels_batch(out[features.PIXELS_KEY]).numpy()
    for i, data in enumerate(raw_images):
        np.testing.assert_array_equal(pixels[i], _decode(data).astype(np.float32))
    assert [round(float(p.mean())) for p in pixels] == [200, 76, 29]


def test_preprocessing_fn_serving_inputs_have_no_label(raw_images):
    out = pp.preprocessing_fn(_inputs(raw_images, with_label=False))
    assert features.LABEL_KEY not in out
    assert {features.PIXELS_KEY, features.LANE_KEY, features.DEVICE_KEY} <= set(out)


def test_preprocessing_fn_without_lighting_column(raw_images):
    out = pp.preprocessing_fn(_inputs(raw_images, with_lighting=False))
    assert features.LIGHTING_KEY not in out


def test_preprocessing_fn_image_size_from_custom_config(raw_images):
    out = pp.preprocessing_fn(_inputs(raw_images), custom_config={"image_size": 64})
    assert pp.parse_pixels_batch(out[features.PIXELS_KEY], 64).shape == (3, 64, 64, 1)


# --- the preprocessing contract the manifest publishes -----------------------------


def _follow_the_contract(data: bytes, contract_: dict, rgb_first: bool = False) -> np.ndarray:
    """An app's path written from the contract's words alone: decode RGB (PIL), gray by its coefficients, resize."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    weights = np.array([contract_["gray"]["coefficients"][c] for c in "rgb"], dtype=np.float32)
    size = contract_["resize"]["size"]
    assert contract_["resize"] == {**contract_["resize"], "method": "bilinear", "antialias": True}

    def resize(image: np.ndarray) -> np.ndarray:
        return tf.image.resize(image, size, method="bilinear", antialias=True).numpy()

    if rgb_first:  # the Tasks variant's order: the app resizes RGB, the model converts
        resized = np.clip(np.round(resize(rgb)), 0, 255)
        return np.clip(np.round(resized @ weights), 0, 255)[..., None]
    gray = np.clip(np.round(rgb @ weights), 0, 255)[..., None]
    return np.clip(np.round(resize(gray)), 0, 255)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("frame_size", [(320, 240), (96, 200)])
def test_the_published_contract_reproduces_transform(make_image, fmt, frame_size):
    contract_ = pp.preprocessing_contract(SIZE)
    assert tuple(contract_["gray"]["coefficients"].values()) == pp.GRAY_COEFFICIENTS
    assert contract_["resize"]["size"] == [SIZE, SIZE] and contract_["value"]["range"] == [0, 255]
    data = make_image("RGB", frame_size, fmt, seed=3)
    transform = _decode(data).astype(np.int16)
    for rgb_first in (False, True):
        diff = np.abs(_follow_the_contract(data, contract_, rgb_first=rgb_first).astype(np.int16) - transform)
        # Rounding only (the decoder's fixed-point luma, rounding after each of two linear steps) ...
        assert np.mean(diff <= 1) >= 0.97 and diff.mean() < 0.6, (fmt, frame_size, rgb_first)
        if fmt == "PNG":
            assert diff.max() <= 2, (frame_size, rgb_first)
        # ... except that a JPEG's gray is its Y channel, which decoded RGB reproduces except where
        # R, G or B clip at 0 or 255 (saturated colours: the contract says so): a few levels there.
        assert diff.max() <= 6, (fmt, frame_size, rgb_first)


def test_camera_frame_input_gray_is_transform_and_rgb_is_the_resized_frame(make_image):
    data = make_image("RGB", (300, 200), "JPEG", seed=4)
    gray = pp.camera_frame_input(data, 1).numpy()
    np.testing.assert_array_equal(gray, _decode(data))
    rgb = pp.camera_frame_input(data, 3).numpy()
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    # A colour frame: the channels differ, and their BT.601 gray is Transform's gray within a level.
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() > 5
    luma = np.round(rgb.astype(np.float32) @ np.array(pp.GRAY_COEFFICIENTS, np.float32))[..., None]
    assert np.mean(np.abs(luma - gray) <= 1) >= 0.97
    with pytest.raises(ValueError, match="channels must be 1"):
        pp.camera_frame_input(data, 4)
