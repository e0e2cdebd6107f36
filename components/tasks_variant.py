"""The ``tasks`` TFLite variant: RGB uint8 in, metadata embedded, for MediaPipe Tasks.

MediaPipe Tasks' ``ImageClassifier`` (what the Android app uses) only accepts a
model whose single input is ``[1, H, W, 3]`` (or 4) ``uint8`` or ``float32``
with RGB metadata, and it reads the class names from the model's TFLite
metadata. Our other variants take gray ``[1, 128, 128, 1]`` float32 and carry
no metadata, so MediaPipe refuses them. This variant runs the *same* weights:

1. input ``image``: RGB ``uint8 [1, 128, 128, 3]``, raw 0..255 pixels (the
   frame MediaPipe has already resized to the input size);
2. inside the model: cast to float32, ITU-R BT.601 luma
   (:func:`shelf_model.preprocessing.gray_of_rgb`), ``tf.round`` and
   clip to 0..255 (training fed integer gray pixels), ``[1, 128, 128, 1]``;
3. the SavedModel's ``serving_image`` signature, unchanged;
4. output ``probabilities``: float32 ``[1, 3]``.

The Trainer exports steps 1-4 as the SavedModel's ``serving_rgb`` signature,
which is converted like the ``fp16`` variant. For a model exported before that
signature, :func:`rgb_module` builds the same steps around ``serving_image``.

Weights are float16 like the ``fp16`` variant, builtin ops only. The metadata
(model name and description, RGB image properties, normalisation mean 0 /
std 1 so MediaPipe feeds raw 0..255, and ``labels.txt`` attached to the output
as ``TENSOR_AXIS_LABELS``) is written with ``tflite-support``'s maintained
image-classifier metadata writer (``create_from_metadata_info``, the variant of
``create_for_inference`` that also takes the model's name and description).

Why ``tflite-support`` and not MediaPipe's own writers: MediaPipe cannot join
our lock. ``tensorflow-metadata 1.16.1`` (needed by TFMA 0.47.1) requires
``protobuf<4.21`` on Python 3.10, mediapipe releases from about 0.10.12 need
``protobuf>=4.25``, and 0.10.11 (the last accepting protobuf 3) depends on
torch, a multi-GB CUDA build. MediaPipe's metadata writers were forked from
``tflite-support``'s and write the same flatbuffer schema, and
``tflite-support==0.4.4`` accepts protobuf 3.

Imported as ``tensorflow_lite_support.metadata...`` (the same wheel's real
modules), never as ``tflite_support``: that package's ``__init__`` also loads
the Task Library, whose pybind11 ``StatusCode`` type clashes with
TensorFlow's ("ImportError: generic_type: cannot initialize type
"StatusCode": an object with that name is already defined"). With TensorFlow
installed, ``import tflite_support`` fails even on its own, in any order
(its metadata module imports TensorFlow for file access first).
``tflite_support.metadata_writers`` only re-exports the modules used here,
and those load next to TensorFlow in either import order.

MediaPipe itself runs only in its own test environment
(``requirements-mediapipe.lock``, ``.venv-mediapipe``), where
``scripts/tasks_classify.py`` loads this variant with the real
``ImageClassifier`` (tests/test_mediapipe_tasks.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from components import tflite_convert
from shelf_data.contract import LABELS
from shelf_model import features, preprocessing
from shelf_model.preprocessing import DEFAULT_IMAGE_SIZE, GRAY_COEFFICIENTS

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
    if rgb_exported and features.RGB_SIGNATURE in signature_keys(saved_model_dir):
        converter = tflite_convert.saved_model_converter(saved_model_dir, features.RGB_SIGNATURE, loaded)
    else:
        module = rgb_module(saved_model_dir, image_size=image_size, signature_key=signature_key)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return bytes(converter.convert())


def add_metadata(model_bytes: bytes, labels: Sequence[str] = LABELS) -> bytes:
    """Embed the MediaPipe/TFLite Task metadata and the label file into a converted model.

    Args:
        model_bytes: a TFLite flatbuffer with one RGB image input and one probabilities output.
        labels: class names in output order (``shelf_data.contract.LABELS``).

    Returns:
        The model with metadata and ``labels.txt`` packed in (still a valid ``.tflite``).

    Raises:
        ValueError: no labels, or a label that is empty or spans lines.
    """
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as metadata_fb
    from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier, metadata_info, writer_utils

    labels = [str(label) for label in labels]
    if not labels or any(not label.strip() or "\n" in label for label in labels):
        raise ValueError(f"labels must be non-empty single-line names. Received labels={labels}")
    buffer = bytearray(model_bytes)
    with tempfile.TemporaryDirectory(prefix="tasks-labels-") as tmp:
        label_path = os.path.join(tmp, LABEL_FILE)
        with open(label_path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(labels) + "\n")
        writer = image_classifier.MetadataWriter.create_from_metadata_info(
            buffer,
            general_md=metadata_info.GeneralMd(name=MODEL_NAME, description=MODEL_DESCRIPTION),
            input_md=metadata_info.InputImageTensorMd(
                name=INPUT_NAME,
                description=INPUT_DESCRIPTION,
                norm_mean=[0.0],
                norm_std=[1.0],
                color_space_type=metadata_fb.ColorSpaceType.RGB,
                tensor_type=writer_utils.get_input_tensor_types(buffer)[0],
            ),
            output_md=metadata_info.ClassificationTensorMd(
                name=OUTPUT_NAME,
                description=OUTPUT_DESCRIPTION,
                label_files=[metadata_info.LabelFileMd(file_path=label_path)],
                tensor_type=writer_utils.get_output_tensor_types(buffer)[0],
            ),
        )
        return bytes(writer.populate())


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
            (``tflite_convert.load_saved_model``), so it is not loaded again.

    Returns:
        The ``.tflite`` bytes MediaPipe Tasks' ``ImageClassifier`` loads as they are.
    """
    return add_metadata(_convert_rgb(saved_model_dir, image_size, signature_key, loaded), labels)


def read_metadata(model_bytes: bytes) -> dict[str, Any]:
    """The metadata embedded in a model, as tflite-support's ``MetadataDisplayer`` reads it.

    Args:
        model_bytes: a ``.tflite`` model (from :func:`convert_tasks`).

    Returns:
        ``{"metadata": <the metadata JSON as a dict, {} when there is none>,
        "associated_files": [packed file names], "labels": [lines of the
        output's TENSOR_AXIS_LABELS file, [] when there is none]}``.
    """
    from tensorflow_lite_support.metadata.python import metadata as tflite_metadata

    buffer = bytearray(model_bytes)
    try:
        displayer = tflite_metadata.MetadataDisplayer.with_model_buffer(buffer)
    except ValueError:  # the model has no metadata buffer at all
        return {"metadata": {}, "associated_files": [], "labels": []}
    metadata = json.loads(displayer.get_metadata_json())
    files = sorted(displayer.get_packed_associated_file_list())
    labels: list[str] = []
    for tensor in metadata.get("subgraph_metadata", [{}])[0].get("output_tensor_metadata", []):
        for associated in tensor.get("associated_files", []):
            if associated.get("type") == "TENSOR_AXIS_LABELS" and associated.get("name") in files:
                text = displayer.get_associated_file_buffer(associated["name"]).decode("utf-8")
                labels = [line for line in text.splitlines() if line.strip()]
                break
    return {"metadata": metadata, "associated_files": files, "labels": labels}
