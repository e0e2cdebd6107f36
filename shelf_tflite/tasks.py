"""The ``tasks`` TFLite variant: RGB uint8 in, metadata embedded, for MediaPipe Tasks.

MediaPipe Tasks' ``ImageClassifier`` (what the Android app uses) needs one RGB ``uint8`` input and the
class names in the model's TFLite metadata. This variant runs the *same* weights as the gray ones behind
an RGB-to-gray step: it is the SavedModel's ``serving_rgb`` signature converted like ``fp16`` (for a
model exported without it, :func:`rgb_module` builds the same steps around ``serving_image``), with the
metadata MediaPipe's image classifier writers produce, written by :mod:`shelf_tflite.metadata`.

See docs/bucket-contract.md#the-tasks-variant-and-its-metadata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from shelf_data.contract import LABELS
from shelf_model import features, preprocessing
from shelf_model.preprocessing import DEFAULT_IMAGE_SIZE, GRAY_COEFFICIENTS
from shelf_tflite import convert, runtime
from shelf_tflite import metadata as tflite_metadata

MODEL_NAME = "Shelf audit classifier: ok / misplaced / damaged"
MODEL_DESCRIPTION = (
    "Classifies a shelf photo as ok, misplaced or damaged. Takes an RGB uint8 frame (raw 0..255 pixels); "
    "the conversion to gray (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, rounded to whole levels) happens "
    "inside the model, then the gray classifier the pipeline trained runs on it. Outputs one probability per label."
)
INPUT_NAME = "image"
INPUT_DESCRIPTION = (
    "RGB camera frame resized to the input size, uint8 0..255, no normalisation (mean 0, std 1); "
    "converted to BT.601 gray inside the model."
)
OUTPUT_NAME = features.PROBABILITIES
OUTPUT_DESCRIPTION = "Probability of each label (ok, misplaced, damaged), in labels.txt order; they sum to 1."
LABEL_FILE = "labels.txt"
CHANNELS = 3


def gray_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """The model's own gray conversion in NumPy: ``[..., 3]`` RGB -> float32 ``[..., 1]`` whole levels 0..255.

    The reference the tests (and anyone checking the app) compare the variant with:
    BT.601 luma, rounded and clipped exactly as the model does it.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.shape[-1] != CHANNELS:
        raise ValueError(f"expected RGB images [..., 3]. Received shape={rgb.shape}")
    gray = rgb @ np.asarray(GRAY_COEFFICIENTS, dtype=np.float32)
    return np.clip(np.round(gray), 0.0, 255.0)[..., None].astype(np.float32)


def rgb_module(
    saved_model_dir: str,
    image_size: int | None = None,
    signature_key: str = features.IMAGE_SIGNATURE,
) -> tf.Module:
    """Wrap the SavedModel's image signature behind an RGB uint8 input.

    Args:
        saved_model_dir: SavedModel folder (the Model artifact's ``Format-Serving``).
        image_size: the Trainer's input size (the signature's height and width); None: read from the signature.
        signature_key: the gray image signature (float32 ``[None, size, size, 1]`` 0..255).

    Returns:
        A module whose ``serve`` (a ``tf.function``) maps ``image`` uint8
        ``[1, size, size, 3]`` to ``{"probabilities": float32 [1, classes]}``.
        The module keeps the loaded SavedModel alive (its variables).

    Raises:
        ValueError: the signature's input is not ``[None, image_size, image_size, 1]``.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    signature = loaded.signatures[signature_key]
    spec = signature.structured_input_signature[1][features.IMAGE_INPUT]
    if image_size is None:
        image_size = int(spec.shape[1] or DEFAULT_IMAGE_SIZE)
    if list(spec.shape[1:]) != [image_size, image_size, 1]:
        raise ValueError(
            f"{signature_key!r} takes {spec.shape}, expected [None, {image_size}, {image_size}, 1] gray images"
        )

    @tf.function(
        input_signature=[tf.TensorSpec([1, image_size, image_size, CHANNELS], tf.uint8, name=INPUT_NAME)],
        autograph=False,
    )
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        # The Trainer saw whole gray levels (Transform stores uint8): the same rounding as the signature.
        gray = preprocessing.gray_of_rgb(image)
        probabilities = signature(**{features.IMAGE_INPUT: gray})[features.PROBABILITIES]
        return {OUTPUT_NAME: tf.identity(probabilities, name=OUTPUT_NAME)}

    module = tf.Module()
    module.loaded = loaded
    module.serve = serve
    return module


def signature_keys(saved_model_dir: str) -> set[str]:
    """The signatures a SavedModel exports, read from ``saved_model.pb`` without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    # As ``tf.saved_model.load(...).signatures`` lists them: without the internal ``__saved_model_init_op``.
    return {key for graph in proto.meta_graphs for key in graph.signature_def if not key.startswith("__")}


def _convert_rgb(saved_model_dir: str, image_size: int | None, signature_key: str, loaded: Any | None = None) -> bytes:
    """The RGB model as a float16-weight TFLite flatbuffer, without metadata.

    From the SavedModel's ``serving_rgb`` signature when the Trainer exported one
    (a plain conversion, like ``fp16``); otherwise (models exported before it) from
    :func:`rgb_module`, a wrapper traced here and converted from its concrete
    function, which TensorFlow does by saving it again (about twice as slow).
    """
    rgb_exported = signature_key == features.IMAGE_SIGNATURE and image_size is None
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    if rgb_exported and features.RGB_SIGNATURE in signature_keys(saved_model_dir):
        converter = convert.saved_model_converter(saved_model_dir, features.RGB_SIGNATURE, loaded)
    else:
        module = rgb_module(saved_model_dir, image_size=image_size, signature_key=signature_key)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def tasks_metadata() -> dict[str, Any]:
    """The variant's metadata in its JSON shape (:func:`shelf_tflite.metadata.encode`).

    One RGB ``uint8`` image input fed raw (mean 0, std 1, values 0..255) and one
    probabilities output (0..1) whose axis is labelled by :data:`LABEL_FILE` (the
    class names travel in that file, the metadata only points at it).
    """
    return {
        "name": MODEL_NAME,
        "description": MODEL_DESCRIPTION,
        "subgraph_metadata": [
            {
                "input_tensor_metadata": [
                    {
                        "name": INPUT_NAME,
                        "description": INPUT_DESCRIPTION,
                        "content": {
                            "content_properties_type": "ImageProperties",
                            "content_properties": {"color_space": "RGB"},
                        },
                        "process_units": [
                            {"options_type": "NormalizationOptions", "options": {"mean": [0.0], "std": [1.0]}}
                        ],
                        "stats": {"max": [255.0], "min": [0.0]},
                    }
                ],
                "output_tensor_metadata": [
                    {
                        "name": OUTPUT_NAME,
                        "description": OUTPUT_DESCRIPTION,
                        "content": {"content_properties_type": "FeatureProperties", "content_properties": {}},
                        "stats": {"max": [1.0], "min": [0.0]},
                        "associated_files": [
                            {
                                "name": LABEL_FILE,
                                "description": "Labels for categories that the model can recognize.",
                                "type": "TENSOR_AXIS_LABELS",
                            }
                        ],
                    }
                ],
            }
        ],
        "min_parser_version": tflite_metadata.MIN_PARSER_VERSION,
    }


def add_metadata(model_bytes: bytes, labels: Sequence[str] = LABELS) -> bytes:
    """Embed the MediaPipe Tasks metadata and the label file into a converted model.

    Args:
        model_bytes: a TFLite flatbuffer with one RGB ``uint8`` image input and one float32 probabilities output.
        labels: class names in output order (``shelf_data.contract.LABELS``).

    Returns:
        The model with metadata and ``labels.txt`` packed in (still a valid ``.tflite``).

    Raises:
        ValueError: no labels, a label that is empty or spans lines, or a model whose
            input is not RGB ``uint8`` or whose output does not have one score per label.
    """
    labels = [str(label) for label in labels]
    if not labels or any(not label.strip() or "\n" in label for label in labels):
        raise ValueError(f"labels must be non-empty single-line names. Received labels={labels}")
    tensors = runtime.describe_io(model_bytes)
    if tensors["input"]["dtype"] != "uint8" or tensors["input"]["shape"][-1] != CHANNELS:
        raise ValueError(f"the tasks variant takes RGB uint8 images [1, h, w, 3]. Received input={tensors['input']}")
    if tensors["output"]["dtype"] != "float32" or tensors["output"]["shape"][-1] != len(labels):
        raise ValueError(
            f"the tasks variant outputs float32 [1, {len(labels)}], one score per label. "
            f"Received output={tensors['output']}"
        )
    label_file = ("\n".join(labels) + "\n").encode("utf-8")
    return tflite_metadata.populate(model_bytes, tasks_metadata(), {LABEL_FILE: label_file})


def convert_tasks(
    saved_model_dir: str,
    labels: Sequence[str] = LABELS,
    image_size: int | None = None,
    signature_key: str = features.IMAGE_SIGNATURE,
    loaded: Any | None = None,
) -> bytes:
    """Build the ``tasks`` variant: RGB uint8 input, gray inside, fp16 weights, metadata embedded.

    Args:
        saved_model_dir: SavedModel folder (the Model artifact's ``Format-Serving``).
        labels: class names in output order, written to the metadata's label file.
        image_size: the Trainer's input size; None: the signature's (``training.image_size``).
        signature_key: the gray image signature; never ``serving_default``.
        loaded: the SavedModel already loaded from ``saved_model_dir``
            (:func:`shelf_tflite.convert.load_saved_model`), so it is not loaded again.

    Returns:
        The ``.tflite`` bytes MediaPipe Tasks' ``ImageClassifier`` loads as they are.
    """
    return add_metadata(_convert_rgb(saved_model_dir, image_size, signature_key, loaded), labels)
