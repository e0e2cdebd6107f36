"""Unit tests of the Keras model: shapes, size, single scaling, weight adaptation, fine-tuning switches."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tf_keras
from tf_keras.src.utils import data_utils

from shelf_model import model as model_lib

pytestmark = pytest.mark.unit

SIZE = 128


def _all_layers(model: tf_keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf_keras.Model):
            yield from _all_layers(layer)


def _mobilenet(channels: int, include_preprocessing: bool = True) -> tf_keras.Model:
    return tf_keras.applications.MobileNetV3Small(
        input_shape=(SIZE, SIZE, channels),
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=include_preprocessing,
    )


def _perturb(model: tf_keras.Model, seed: int = 0) -> None:
    """Random weights that keep activations O(1) (Keras' own init shrinks the features to ~1e-10)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            new = [
                rng.uniform(0.5, 1.5, gamma.shape),
                rng.normal(0, 0.1, beta.shape),
                rng.normal(0, 0.1, mean.shape),
                rng.uniform(0.5, 1.5, var.shape),
            ]
        else:
            kernel = weights[0]
            fan_in = np.prod(kernel.shape[:2]) if isinstance(layer, tf_keras.layers.DepthwiseConv2D) else None
            fan_in = fan_in or np.prod(kernel.shape[:-1])
            new = [rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape)]
            new += [rng.normal(0, 0.1, w.shape) for w in weights[1:]]
        layer.set_weights([w.astype(np.float32) for w in new])


@pytest.fixture(scope="module")
def gray_images() -> np.ndarray:
    """Two float32 0..255 gray images: a ramp with noise, and noise."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)[None, :, None]
    first = np.clip(ramp + rng.normal(0, 20, (SIZE, SIZE, 1)), 0, 255)
    second = rng.uniform(0, 255, (SIZE, SIZE, 1))
    return np.stack([first, second]).astype(np.float32)


@pytest.fixture(scope="module")
def rgb_weights(tmp_path_factory) -> tuple[tf_keras.Model, Path]:
    """A 3-channel MobileNetV3Small (no top) with perturbed weights, and its saved .h5 weights file."""
    rgb = _mobilenet(3)
    _perturb(rgb)
    path = tmp_path_factory.mktemp("weights") / "w.h5"
    rgb.save_weights(str(path))
    return rgb, path


@pytest.fixture(scope="module")
def adapted(rgb_weights) -> tf_keras.Model:
    """The 1-channel backbone built from the .h5 file."""
    return model_lib.build_backbone(SIZE, weights=str(rgb_weights[1]))


@pytest.fixture(scope="module")
def classifier() -> tf_keras.Model:
    """A fresh classifier with random init (read-only for tests)."""
    return model_lib.build_model(SIZE, weights="none", batchnorm_momentum=0.9)


# --- Shapes and size -------------------------------------------------------------------


def test_shapes_and_softmax(classifier, gray_images):
    assert classifier.input_shape == (None, SIZE, SIZE, 1)
    assert classifier.output_shape == (None, 3)
    assert classifier.input.name.startswith("image")
    out = classifier(gray_images, training=False).numpy()
    assert out.shape == (2, 3)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_parameter_count(classifier):
    params = classifier.count_params()
    print(f"parameters: {params:,}")
    # MobileNetV3Small without top on 1 channel (~0.94M) + a 576 -> 3 dense head.
    assert 900_000 <= params <= 1_000_000
    assert classifier.get_layer("probabilities").count_params() == 576 * 3 + 3


def test_batchnorm_momentum_is_set(classifier):
    bns = [layer for layer in _all_layers(classifier) if isinstance(layer, tf_keras.layers.BatchNormalization)]
    assert len(bns) > 30
    assert {layer.momentum for layer in bns} == {0.9}
    model_lib.set_batchnorm_momentum(model_lib.backbone_of(classifier), 0.99)
    try:
        assert {layer.momentum for layer in bns} == {0.99}
    finally:
        model_lib.set_batchnorm_momentum(model_lib.backbone_of(classifier), 0.9)


# --- Single scaling -----------------------------------------------------------------------


def test_exactly_one_rescaling_inside_mobilenet(classifier):
    rescalings = [layer for layer in _all_layers(classifier) if isinstance(layer, tf_keras.layers.Rescaling)]
    assert len(rescalings) == 1
    (rescaling,) = rescalings
    assert rescaling in model_lib.backbone_of(classifier).layers
    # 0..255 -> -1..1
    assert (rescaling.scale, rescaling.offset) == (pytest.approx(1 / 127.5), pytest.approx(-1.0))
    assert not any(isinstance(layer, tf_keras.layers.Normalization) for layer in _all_layers(classifier))


def test_model_takes_raw_pixels_and_scales_them_once(rgb_weights, adapted, gray_images):
    model = model_lib.build_model(SIZE, weights=str(rgb_weights[1]))
    # The same weights without MobileNetV3's preprocessing, fed pixels scaled by hand to -1..1.
    plain = _mobilenet(1, include_preprocessing=False)
    plain.set_weights(adapted.get_weights())
    expected_features = plain(gray_images / 127.5 - 1.0, training=False).numpy()
    got_features = model_lib.backbone_of(model)(gray_images, training=False).numpy()
    np.testing.assert_allclose(got_features, expected_features, rtol=1e-4, atol=1e-3)
    head = model.get_layer("probabilities")
    np.testing.assert_allclose(
        model(gray_images, training=False).numpy(), head(expected_features).numpy(), rtol=1e-4, atol=1e-5
    )
    # Feeding 0..1 pixels is a different input to the model: nothing else rescales.
    unit = model(gray_images / 255.0, training=False).numpy()
    assert np.abs(unit - model(gray_images, training=False).numpy()).max() > 1e-3


# --- Weight adaptation (3-channel weights -> 1 channel) ----------------------------------


def test_adapted_model_matches_rgb_model_on_gray_images(rgb_weights, adapted, gray_images):
    rgb, _ = rgb_weights
    expected = rgb(np.repeat(gray_images, 3, axis=-1), training=False).numpy()
    assert np.abs(expected).max() > 1.0  # the comparison is not between near-zero features
    got = adapted(gray_images, training=False).numpy()
    assert got.shape == expected.shape == (2, 576)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    random_init = model_lib.build_backbone(SIZE, weights="none")(gray_images, training=False).numpy()
    assert not np.allclose(random_init, expected, rtol=1e-2, atol=1e-2)


def test_first_convolution_kernel_is_summed_over_channels(rgb_weights, adapted):
    rgb, _ = rgb_weights
    rgb_kernel = rgb.get_layer("Conv").get_weights()[0]
    gray_kernel = adapted.get_layer("Conv").get_weights()[0]
    assert rgb_kernel.shape[2] == 3 and gray_kernel.shape[2] == 1
    np.testing.assert_allclose(gray_kernel, rgb_kernel.sum(axis=2, keepdims=True), rtol=1e-6)
    # Every other weight is copied as is.
    for src, dst in zip(rgb.get_weights()[1:], adapted.get_weights()[1:], strict=True):
        np.testing.assert_array_equal(src, dst)


def test_imagenet_weights_go_through_the_same_adaptation(rgb_weights, adapted, gray_images):
    # Keras' download, patched to hand back a local file instead of fetching over the network.
    with mock.patch.object(data_utils, "get_file", return_value=str(rgb_weights[1])) as get_file:
        backbone = model_lib.build_backbone(SIZE, weights="imagenet")
    get_file.assert_called_once()
    assert "mobilenet_v3_small" in get_file.call_args.args[0] and "no_top" in get_file.call_args.args[0]
    np.testing.assert_allclose(
        backbone(gray_images, training=False).numpy(), adapted(gray_images, training=False).numpy(), atol=1e-6
    )


def test_imagenet_without_network_says_what_to_do():
    failure = Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")
    with mock.patch.object(data_utils, "get_file", side_effect=failure) as get_file:
        with pytest.raises(RuntimeError) as excinfo:
            model_lib.build_backbone(SIZE, weights="imagenet")
    get_file.assert_called_once()
    message = str(excinfo.value)
    assert "network" in message
    assert "training.weights" in message and "file" in message
    assert "Temporary failure in name resolution" in message
    assert excinfo.value.__cause__ is failure


def test_missing_weights_file(tmp_path):
    path = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        model_lib.build_backbone(SIZE, weights=str(path))


def test_unknown_weights_value():
    with pytest.raises(ValueError, match="Received weights=resnet50"):
        model_lib.build_backbone(SIZE, weights="resnet50")


def test_adapt_refuses_different_architectures(classifier):
    with pytest.raises(ValueError, match="models differ"):
        model_lib.adapt_rgb_weights(_mobilenet(3), classifier)


# --- Fine-tuning switches ------------------------------------------------------------------


def test_unfreeze_top_keeps_batchnorm_frozen():
    model = model_lib.build_model(SIZE, weights="none")
    backbone = model_lib.backbone_of(model)
    backbone.trainable = False
    frozen_count = len(model.trainable_weights)
    assert frozen_count == 2  # only the dense head
    model_lib.unfreeze_top(model, 30)
    layers = backbone.layers
    cut = len(layers) - 30
    for i, layer in enumerate(layers):
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable == (i >= cut), layer.name
    assert not backbone.get_layer("Conv").trainable
    assert len(model.trainable_weights) > frozen_count
    bn_weights = {
        id(w) for layer in layers if isinstance(layer, tf_keras.layers.BatchNormalization) for w in layer.weights
    }
    assert bn_weights and not bn_weights & {id(w) for w in model.trainable_weights}


def test_weights_file_behind_a_url_is_copied_locally(rgb_weights, adapted, gray_images):
    """A weights file on a tf.io.gfile filesystem (ram:// stands in for gs://) loads like a local one."""
    import tensorflow as tf

    url = "ram://weights/w.h5"
    tf.io.gfile.makedirs("ram://weights")
    tf.io.gfile.copy(str(rgb_weights[1]), url, overwrite=True)
    remote = model_lib.build_backbone(SIZE, weights=url)
    np.testing.assert_allclose(
        remote(gray_images, training=False).numpy(), adapted(gray_images, training=False).numpy(), rtol=1e-6
    )
