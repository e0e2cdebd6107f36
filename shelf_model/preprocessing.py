"""Transform's ``preprocessing_fn``: decode, grayscale, resize; pass labels and slices through.

Pixels stay 0..255: normalisation lives inside the Keras model, once
(MobileNetV3's ``include_preprocessing``), so the TFLite model takes the
same raw pixels the handheld has. Images are stored as the serialized uint8
tensor (16 KiB at 128x128) rather than float features (64 KiB+), which keeps
the transformed examples small.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from shelf_data import contract
from shelf_model import features

DEFAULT_IMAGE_SIZE = 128


def decode_and_resize(encoded: tf.Tensor, image_size: int = DEFAULT_IMAGE_SIZE) -> tf.Tensor:
    """Decode one JPEG or PNG (gray, RGB or RGBA) to uint8 gray ``[size, size, 1]``.

    The image is stretched to a square, as the handheld does with the camera frame.
    """
    image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def serialize_pixels(images: tf.Tensor) -> tf.Tensor:
    """uint8 ``[batch, h, w, 1]`` -> string ``[batch]`` (one serialized tensor each)."""
    return tf.map_fn(tf.io.serialize_tensor, images, fn_output_signature=tf.string)


def parse_pixels(serialized: tf.Tensor, image_size: int = DEFAULT_IMAGE_SIZE) -> tf.Tensor:
    """Inverse of :func:`serialize_pixels` for one example: uint8 ``[size, size, 1]``."""
    image = tf.io.parse_tensor(serialized, out_type=tf.uint8)
    return tf.ensure_shape(tf.reshape(image, [image_size, image_size, 1]), [image_size, image_size, 1])


def parse_pixels_batch(serialized: tf.Tensor, image_size: int = DEFAULT_IMAGE_SIZE) -> tf.Tensor:
    """Batch version of :func:`parse_pixels`, returning float32 0..255 ``[batch, size, size, 1]``."""
    images = tf.map_fn(
        lambda s: parse_pixels(s, image_size),
        tf.reshape(serialized, [-1]),
        fn_output_signature=tf.TensorSpec([image_size, image_size, 1], tf.uint8),
    )
    return tf.cast(images, tf.float32)


def _dense(x: Any, default: Any) -> tf.Tensor:
    """A required feature ([batch, 1] dense) or an optional one (sparse) as [batch]."""
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any] | None = None) -> dict[str, tf.Tensor]:
    """TFT preprocessing: raw contract features -> transformed features."""
    image_size = int((custom_config or {}).get("image_size", DEFAULT_IMAGE_SIZE))
    encoded = tf.reshape(inputs[contract.IMAGE_KEY], [-1])
    images = tf.map_fn(
        lambda s: decode_and_resize(s, image_size),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 1], tf.uint8),
    )
    outputs = {
        features.PIXELS_KEY: serialize_pixels(images),
        features.LANE_KEY: _dense(inputs[contract.LANE_KEY], 0),
        features.DEVICE_KEY: _dense(inputs[contract.DEVICE_KEY], ""),
    }
    # Label is absent at serving time; TFT drops outputs whose inputs are missing.
    if contract.LABEL_KEY in inputs:
        outputs[features.LABEL_KEY] = _dense(inputs[contract.LABEL_KEY], -1)
    if contract.LIGHTING_KEY in inputs:
        outputs[features.LIGHTING_KEY] = _dense(inputs[contract.LIGHTING_KEY], features.UNKNOWN_LIGHTING)
    return outputs
