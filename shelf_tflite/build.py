"""Build the TFLite variants of a SavedModel: :func:`convert` one, :func:`convert_many` several.

:func:`convert` builds one variant (``fp32``, ``fp16``, ``dynamic``, ``int8``,
``tasks``) from the ``serving_image`` signature; :func:`convert_many` builds
several, the gray ones from one converter (:mod:`shelf_tflite.convert`).
``serving_default`` parses ``tf.Example`` protos and would need Flex ops, so it
is never converted. ``tasks`` (RGB uint8 input, gray conversion inside, TFLite
metadata for MediaPipe Tasks) is built by :mod:`shelf_tflite.tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shelf_data.contract import LABELS
from shelf_tflite import tasks
from shelf_tflite.convert import DEFAULT_SIGNATURE, saved_model_converter, set_options
from shelf_tflite.variants import check_variant


def convert(
    saved_model_dir: str,
    variant: str,
    representative_images: np.ndarray | None = None,
    signature_key: str = DEFAULT_SIGNATURE,
) -> bytes:
    """Convert one signature of a SavedModel to a TFLite flatbuffer.

    Args:
        saved_model_dir: SavedModel folder (the Model artifact's ``Format-Serving``).
        variant: one of :data:`shelf_tflite.variants.VARIANTS`. ``tasks`` is delegated to
            :func:`shelf_tflite.tasks.convert_tasks`.
        representative_images: uint8 or float images ``[N, 128, 128, 1]`` in
            0..255, required for ``int8`` (calibration), ignored otherwise.
        signature_key: the image signature; never ``serving_default``.

    Returns:
        The ``.tflite`` model bytes.

    Raises:
        ValueError: unknown variant, or int8 without representative images.
    """
    return convert_many(saved_model_dir, [variant], representative_images, signature_key)[variant]


def convert_many(
    saved_model_dir: str,
    variants: Sequence[str],
    representative_images: np.ndarray | None = None,
    signature_key: str = DEFAULT_SIGNATURE,
    loaded: Any | None = None,
) -> dict[str, bytes]:
    """Convert several variants of one SavedModel: ``{variant: .tflite bytes}`` in the order asked for.

    The gray variants share one converter: each ``convert()`` reads the options
    anew, so only the options change between variants. Every option a variant
    depends on is set each time, so the bytes are those of a fresh converter
    (tested). ``loaded``: the SavedModel as :func:`shelf_tflite.convert.load_saved_model`
    returned it for this folder, spares loading it again (:func:`shelf_tflite.convert.saved_model_converter`).
    Other arguments as :func:`convert`.
    """
    for variant in variants:
        check_variant(variant)
    if "int8" in variants and (representative_images is None or len(representative_images) == 0):
        raise ValueError("variant='int8' needs representative_images (training images, 0..255)")
    converter = None
    blobs: dict[str, bytes] = {}
    for variant in variants:
        if variant == "tasks":
            blobs[variant] = tasks.convert_tasks(
                saved_model_dir, labels=LABELS, signature_key=signature_key, loaded=loaded
            )
            continue
        if converter is None:
            converter = saved_model_converter(saved_model_dir, signature_key, loaded)
        set_options(converter, variant, representative_images)
        blobs[variant] = bytes(converter.convert())
    return blobs
