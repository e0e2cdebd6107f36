"""The TensorFlow side of conversion: the SavedModel, its TFLite converter and the gray variants' options.

:func:`saved_model_converter` builds the converter of one signature (around the SavedModel when it is
loaded already) and :func:`set_options` sets every option a gray variant depends on;
:mod:`shelf_tflite.build` composes them. :func:`load_saved_model` and :func:`saved_model_predict` give
the SavedModel's own outputs, the reference the variants are verified against.

See docs/bucket-contract.md#the-model-contract for the int8 contract and
docs/design-decisions.md#where-we-differ-from-the-library-defaults for why not TFX's ``TFLiteRewriter``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from shelf_data.contract import LABELS
from shelf_model import features

# The exported signature and its keys are the Trainer's.
DEFAULT_SIGNATURE = features.IMAGE_SIGNATURE
INPUT_KEY = features.IMAGE_INPUT
OUTPUT_KEY = features.PROBABILITIES


def _representative_dataset(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Yield calibration inputs as the converter wants them (float32, batch 1).

    The calibrated range of the input tensor sets the uint8 input scale. When
    the data already spans 0..255 the scale is exactly 1.0 with zero point 0;
    when it does not (dark or washed-out photos) we add one ramp frame that
    does, so the app can always feed raw pixels. One frame among hundreds
    barely moves the activation ranges.
    """
    images = np.asarray(images)
    shape = images.shape[1:]
    if images.size and (images.min() > 0 or images.max() < 255):
        ramp = np.linspace(0, 255, num=int(np.prod(shape)), dtype=np.float32).reshape((1, *shape))
        yield [ramp]
    for image in images:
        yield [np.asarray(image, dtype=np.float32).reshape((1, *shape))]


def saved_model_converter(
    saved_model_dir: str, signature_key: str, loaded: Any | None = None
) -> tf.lite.TFLiteConverter:
    """``tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature_key])``.

    ``from_saved_model`` loads the whole SavedModel in Python (a second or more
    for the Trainer's) only to check the signature and keep the object beside
    the converter; the conversion reads the folder itself. Given ``loaded``
    (``tf.saved_model.load`` of the same folder, serving tags), this builds the
    converter ``from_saved_model`` would return around it, without loading
    again: same class, same arguments, same bytes (tested). Without ``loaded``,
    or if TensorFlow would not import the SavedModel directly, it is
    ``from_saved_model`` itself.

    Raises:
        ValueError: ``loaded`` has no signature ``signature_key``.
    """
    if loaded is None:
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature_key])
    if signature_key not in loaded.signatures:
        raise ValueError(
            f"signature {signature_key!r} not in the SavedModel {saved_model_dir} (it has {sorted(loaded.signatures)})"
        )
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    # What from_saved_model does after its load (TensorFlow 2.16): the model type goes into the
    # flatbuffer's conversion metadata, then the converter holds the loaded object.
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion_metadata_fb
    from tensorflow.lite.python import lite

    lite.TFLiteConverterBase._set_original_model_type(conversion_metadata_fb.ModelType.TF_SAVED_MODEL)  # noqa: SLF001
    converter = lite.TFLiteSavedModelConverterV2(saved_model_dir, {tf.saved_model.SERVING}, [signature_key], loaded)
    if not converter.saved_model_dir:  # TensorFlow would convert this one from its functions: let it load
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature_key])
    return converter


def set_options(converter: tf.lite.TFLiteConverter, variant: str, representative_images: np.ndarray | None) -> None:
    """Every converter option the gray variants differ in, set from scratch (the converter is reused)."""
    converter.optimizations = []
    converter.target_spec.supported_types = set()
    converter.target_spec.supported_ops = {tf.lite.OpsSet.TFLITE_BUILTINS}
    converter.representative_dataset = None
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = {tf.float16}
    elif variant == "dynamic":
        # Optimize.DEFAULT without a representative dataset = dynamic range.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        images = np.asarray(representative_images)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative_dataset(images)
        # Integer builtins only: conversion fails instead of silently keeping
        # float ops the device's integer kernels would not run.
        converter.target_spec.supported_ops = {tf.lite.OpsSet.TFLITE_BUILTINS_INT8}
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32


def load_saved_model(saved_model: str | Any) -> Any:
    """``tf.saved_model.load`` of a folder; an object it already returned comes back as it is.

    Loading the Trainer's SavedModel takes about a second: a caller that needs it
    several times (the pusher: eval reference, camera goldens, report gallery)
    loads it once and passes the loaded object.
    """
    return tf.saved_model.load(saved_model) if isinstance(saved_model, (str, os.PathLike)) else saved_model


def saved_model_predict(
    saved_model: str | Any, images: np.ndarray, signature_key: str = DEFAULT_SIGNATURE, batch_size: int = 64
) -> np.ndarray:
    """Probabilities of the SavedModel's image signature (the reference).

    Args:
        saved_model: the SavedModel folder, or the model :func:`load_saved_model` loaded from it.
        images: ``[N, H, W, C]`` pixels 0..255 at the signature's size.
        signature_key: the image signature.
        batch_size: images per call.
    """
    signature = load_saved_model(saved_model).signatures[signature_key]
    shape = signature.structured_input_signature[1][INPUT_KEY].shape[1:]
    images = np.asarray(images).reshape((-1, *shape))
    outputs = [  # float32 a batch at a time, not the whole split at once
        signature(**{INPUT_KEY: tf.constant(images[i : i + batch_size], dtype=tf.float32)})[OUTPUT_KEY].numpy()
        for i in range(0, len(images), batch_size)
    ]
    if not outputs:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)
