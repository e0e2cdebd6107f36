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

from shelf_data import contract
from shelf_model import features
from shelf_model.hparams import DEFAULT_IMAGE_SIZE

# ITU-R BT.601 luma weights (R, G, B): what a JPEG decoder returns as gray (the Y channel).
# The Tasks variant applies them inside the model to RGB input; the manifest's contract names them.
GRAY_COEFFICIENTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def decode_and_resize(encoded: tf.Tensor, image_size: int = DEFAULT_IMAGE_SIZE) -> tf.Tensor:
    """Decode one JPEG or PNG (gray, RGB or RGBA) to uint8 gray ``[size, size, 1]``.

    The image is stretched to a square, as the handheld does with the camera frame.
    """
    image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def camera_frame_input(
    encoded: bytes | tf.Tensor, channels: int = 1, image_size: int = DEFAULT_IMAGE_SIZE
) -> tf.Tensor:
    """What a model's input gets from one camera frame (JPEG/PNG bytes), per the preprocessing contract.

    ``channels=1`` is exactly Transform's :func:`decode_and_resize` (the gray variants);
    ``channels=3`` is the RGB frame resized the same way (bilinear, antialias, stretched,
    rounded to uint8) for the Tasks variant, which converts to gray inside the model.
    Returns uint8 ``[size, size, channels]``.
    """
    if channels == 1:
        return decode_and_resize(encoded, image_size)
    if channels != 3:
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB). Received channels={channels}")
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def preprocessing_contract(image_size: int = DEFAULT_IMAGE_SIZE) -> dict[str, Any]:
    """How a camera frame becomes model input, exactly as Transform does it: the manifest's ``preprocessing``.

    An app that follows it feeds the model what it saw in training; the camera goldens
    (``golden/camera.json``) let the app test its whole path against it.
    """
    r, g, b = GRAY_COEFFICIENTS
    return {
        "decode": "JPEG or PNG to 8 bits per channel; EXIF orientation NOT applied; alpha dropped, not composited",
        "gray": {
            "coefficients": {"r": r, "g": g, "b": b},
            "standard": "ITU-R BT.601 luma",
            "how": f"gray = {r} R + {g} G + {b} B, rounded to an integer 0..255 (a JPEG decoder's Y channel)",
            "jpeg": "a JPEG's gray is its Y channel; converting the decoded RGB with these weights gives the same "
            "value within 1 level, except a few levels where R, G or B clip at 0 or 255 (saturated colours)",
            "order": "gray first, then resize; resizing the RGB frame first and converting after differs by "
            "at most 1-2 levels (rounding)",
            "tasks_variant": "takes RGB: the conversion (with rounding) is inside the model",
        },
        "mediapipe": {
            "resize": "MediaPipe Tasks' ImageClassifier stretches a frame to the input size with plain bilinear "
            "sampling, no antialias: close to the contract for small frames, not equal for large ones",
            "advice": "resize the frame to the input size as above (antialiased) before classifying it; "
            "MediaPipe then does not resample it and matches the expected outputs",
        },
        "resize": {
            "size": [image_size, image_size],
            "method": "bilinear",
            "antialias": True,
            "aspect": "stretch: the whole frame is scaled to a square; no crop, no padding",
            "reference": "tf.image.resize(float32 image, size, method='bilinear', antialias=True)",
        },
        "value": {
            "range": [0, 255],
            "rounding": "round half to even, clip to 0..255",
            "dtype": "uint8 input for the int8 and tasks variants; float32 holding 0..255 for fp32, fp16, dynamic",
            "normalisation": "none in the app: the model rescales inside",
        },
        "layout": "NHWC, batch 1",
    }


def gray_of_rgb(images: tf.Tensor) -> tf.Tensor:
    """RGB ``[..., 3]`` (uint8 or float, 0..255) -> float32 ``[..., 1]`` BT.601 gray in whole levels 0..255.

    The gray the Trainer saw for an RGB frame: :data:`GRAY_COEFFICIENTS`, rounded
    half to even and clipped, as Transform stores uint8. The SavedModel's
    ``serving_rgb`` signature and the ``tasks`` TFLite variant apply it inside the model.
    """
    coefficients = tf.constant(GRAY_COEFFICIENTS, dtype=tf.float32)
    gray = tf.reduce_sum(tf.cast(images, tf.float32) * coefficients, axis=-1, keepdims=True)
    return tf.clip_by_value(tf.round(gray), 0.0, 255.0)


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
        import tensorflow_transform as tft  # here: the camera-frame helpers above must stay light to import

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
