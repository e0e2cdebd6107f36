"""The Keras model: MobileNetV3Small on 1-channel 0..255 pixels. Pure tf_keras, no TFX.

Input ``[None, size, size, 1]`` float32 pixels 0..255; MobileNetV3's own
``include_preprocessing`` rescales them to -1..1 inside the model, once.
Output: softmax over the 3 classes in label order.

ImageNet weights are 3-channel. A gray image replicated to RGB gives the
first convolution ``sum_c W[..., c, :] * x``, so summing that kernel over its
input channels yields a 1-channel model with identical outputs on gray input.
"""

from __future__ import annotations

import os
import tempfile

import tf_keras

from shelf_model.hparams import DEFAULT_IMAGE_SIZE

NUM_CLASSES = 3
BACKBONE_NAME = "MobileNetV3Small"


def _backbone(image_size: int, channels: int, weights: str | None) -> tf_keras.Model:
    return tf_keras.applications.MobileNetV3Small(
        input_shape=(image_size, image_size, channels),
        include_top=False,
        weights=weights,
        pooling="avg",
        include_preprocessing=True,
    )


def adapt_rgb_weights(rgb: tf_keras.Model, gray: tf_keras.Model) -> None:
    """Copy ``rgb``'s weights into the 1-channel ``gray`` twin, summing 3-channel input kernels.

    Raises:
      ValueError: the two models do not have the same layers.
    """
    if len(rgb.layers) != len(gray.layers):
        raise ValueError(f"models differ: {len(rgb.layers)} layers vs {len(gray.layers)}")
    for src, dst in zip(rgb.layers, gray.layers, strict=True):
        weights = src.get_weights()
        if not weights:
            continue
        target = dst.get_weights()
        if weights[0].ndim == 4 and weights[0].shape[2] == 3 and target[0].shape[2] == 1:
            weights = [weights[0].sum(axis=2, keepdims=True)] + weights[1:]
        dst.set_weights(weights)


def _local_copy(path: str) -> str:
    """``path`` itself when local; else a temporary local copy (Keras reads .h5 only from local disk)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"weights file not found. Received weights={path}")
    if "://" not in path:
        return path
    local = os.path.join(tempfile.mkdtemp(prefix="weights-"), os.path.basename(path))
    tf.io.gfile.copy(path, local)
    return local


def build_backbone(image_size: int, weights: str = "none") -> tf_keras.Model:
    """The 1-channel MobileNetV3Small feature extractor.

    Args:
      image_size: input height and width.
      weights: ``"none"`` (random init), ``"imagenet"`` (downloaded by Keras;
        needs network) or a path to a 3-channel MobileNetV3Small
        ``include_top=False`` weights file (.h5, local or any ``tf.io.gfile`` URL).

    Raises:
      ValueError: ``weights`` is none of those.
      FileNotFoundError: the weights file does not exist.
      RuntimeError: ImageNet weights could not be downloaded.
    """
    if weights == "none":
        return _backbone(image_size, 1, None)
    if weights == "imagenet":
        try:
            rgb = _backbone(image_size, 3, "imagenet")
        except Exception as e:  # noqa: BLE001 - the download error type varies by platform.
            raise RuntimeError(
                "could not load ImageNet weights for MobileNetV3Small (this needs network access). "
                f"Download them once and pass the file as training.weights. Cause: {e}"
            ) from e
    elif weights.endswith(".h5"):
        rgb = _backbone(image_size, 3, None)
        rgb.load_weights(_local_copy(weights))
    else:
        raise ValueError(f"weights must be 'none', 'imagenet' or a .h5 path. Received weights={weights}")
    gray = _backbone(image_size, 1, None)
    adapt_rgb_weights(rgb, gray)
    return gray


def set_batchnorm_momentum(model: tf_keras.Model, momentum: float) -> None:
    """Keras' MobileNetV3 uses momentum 0.999, which leaves short runs' moving stats at init."""
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = momentum


def build_model(
    image_size: int = DEFAULT_IMAGE_SIZE,
    weights: str = "none",
    dropout: float = 0.2,
    batchnorm_momentum: float = 0.9,
    num_classes: int = NUM_CLASSES,
) -> tf_keras.Model:
    """Classifier: pixels 0..255 ``[None, size, size, 1]`` -> class probabilities."""
    backbone = build_backbone(image_size, weights)
    set_batchnorm_momentum(backbone, batchnorm_momentum)
    inputs = tf_keras.Input(shape=(image_size, image_size, 1), name="image")
    x = backbone(inputs)
    x = tf_keras.layers.Dropout(dropout)(x)
    outputs = tf_keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return tf_keras.Model(inputs, outputs, name="shelf_audit_classifier")


def backbone_of(model: tf_keras.Model) -> tf_keras.Model:
    """The MobileNetV3 sub-model of a :func:`build_model` classifier."""
    return next(layer for layer in model.layers if isinstance(layer, tf_keras.Model))


def unfreeze_top(model: tf_keras.Model, num_layers: int) -> None:
    """Make the top ``num_layers`` of the backbone trainable, keeping BatchNorm frozen."""
    backbone = backbone_of(model)
    backbone.trainable = True
    cut = max(0, len(backbone.layers) - num_layers)
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= cut and not isinstance(layer, tf_keras.layers.BatchNormalization)
