"""Test helpers for the TFLite converter, the bucket and the pusher.

A tiny tf_keras model exported exactly like the Trainer's (``serving_image``:
``image`` float32 [None,128,128,1] 0..255 -> ``probabilities`` [None,3]),
Transform-shaped examples (``pixels`` = serialized uint8 tensor), and
hand-built TFX artifacts around them.

The model classifies by mean brightness (dark = ok, mid = misplaced,
bright = damaged) with fixed weights, so every variant should agree with
the SavedModel and recall is 1.0: tests that need a failing check force it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tfx.types import artifact_utils, standard_artifacts  # noqa: E402

IMAGE_SHAPE = (128, 128, 1)
_CLASS_BRIGHTNESS = (25, 128, 230)


def build_tiny_saved_model(export_dir: str, bias_shift: float = 0.0, rgb: bool = False) -> str:
    """Export the brightness classifier with a ``serving_image`` signature.

    Args:
        export_dir: SavedModel folder to write.
        bias_shift: added to the ``misplaced`` logit: a different model with
            a different fingerprint (same predictions for small values).
        rgb: also export ``serving_rgb`` (uint8 RGB, BT.601 gray inside) as the
            Trainer does; without it the model looks like one exported before that signature.

    Returns:
        ``export_dir``.
    """
    inputs = tf_keras.Input(IMAGE_SHAPE, name="image")
    # Normalisation inside the model, as the model contract says.
    x = tf_keras.layers.Rescaling(1.0 / 255.0)(inputs)
    conv = tf_keras.layers.Conv2D(2, 3, strides=4, activation="relu", name="conv")
    x = conv(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    dense = tf_keras.layers.Dense(3, activation="softmax", name="dense")
    outputs = dense(x)
    model = tf_keras.Model(inputs, outputs)
    # Each filter averages its 3x3 patch: channel value ~ mean brightness m.
    conv.set_weights([np.full((3, 3, 1, 2), 1.0 / 9.0, np.float32), np.zeros(2, np.float32)])
    # logits: ok = 5 - 20 m, misplaced = 0, damaged = 20 m - 15 (m split over 2 channels).
    kernel = np.array([[-10.0, 0.0, 10.0], [-10.0, 0.0, 10.0]], np.float32)
    dense.set_weights([kernel, np.array([5.0, bias_shift, -15.0], np.float32)])

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name="image")])
    def serve_image(image):
        return {"probabilities": model(image, training=False)}

    signatures = {"serving_image": serve_image}
    if rgb:
        from shelf_model.preprocessing import gray_of_rgb

        @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE[:2], 3], tf.uint8, name="image")])
        def serve_rgb(image):
            return serve_image(gray_of_rgb(image))

        signatures["serving_rgb"] = serve_rgb
    tf.saved_model.save(model, export_dir, signatures=signatures)
    return export_dir


def fp32_models(root: str | os.PathLike, bias_shifts: Mapping[str, float]) -> dict[str, bytes]:
    """One fp32 TFLite model per name: the brightness classifier with that name's ``bias_shift`` (under ``root``)."""
    from shelf_tflite import build

    return {
        name: build.convert(build_tiny_saved_model(os.path.join(root, name), bias_shift=shift), "fp32")
        for name, shift in bias_shifts.items()
    }


def verify_on(
    model: bytes,
    variant: str,
    evaluation: tuple[np.ndarray, np.ndarray, np.ndarray],
    golden: tuple[np.ndarray, np.ndarray],
    **options: Any,
) -> Any:
    """``shelf_tflite.verify.verify_variant`` of ``model`` on an eval set and golden samples.

    ``evaluation`` is ``(images, labels, reference)``, ``golden`` is ``(images, reference)``
    (the SavedModel's outputs); ``options`` go through (``config``, ``eval_outputs``).
    """
    from shelf_tflite import verify

    images, labels, reference = evaluation
    golden_images, golden_reference = golden
    return verify.verify_variant(
        model,
        variant,
        golden_images=golden_images,
        golden_reference=golden_reference,
        eval_images=images,
        eval_labels=labels,
        eval_reference=reference,
        **options,
    )


def make_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 images cycling through the classes, with their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    base = np.array(_CLASS_BRIGHTNESS)[labels].reshape(-1, 1, 1, 1)
    noise = rng.integers(-25, 26, size=(count, *IMAGE_SHAPE))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)


def write_split(split_dir: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write Transform-shaped GZIP TFRecords into ``split_dir``."""
    tf.io.gfile.makedirs(split_dir)
    path = os.path.join(split_dir, "transformed_examples-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            feature = {
                "pixels": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(tf.constant(image)).numpy()])
                ),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                "lane_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[1 + i % 40])),
                "device_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"scanner-%d" % (i % 3)])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def make_model_artifact(root: str, bias_shift: float = 0.0) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.uri = os.path.join(root, "Trainer", "model", "1")
    model.id = 11
    build_tiny_saved_model(os.path.join(model.uri, "Format-Serving"), bias_shift=bias_shift)
    return model


def make_blessing(root: str, blessed: bool) -> standard_artifacts.ModelBlessing:
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(root, "Evaluator", "blessing", "2")
    blessing.id = 12
    tf.io.gfile.makedirs(blessing.uri)
    blessing.set_int_custom_property("blessed", 1 if blessed else 0)
    return blessing


def make_examples(root: str, train: int = 60, eval_count: int = 30) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "Transform", "transformed_examples", "3")
    examples.id = 13
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    examples.span = 1
    write_split(os.path.join(examples.uri, "Split-train"), *make_images(train, seed=1))
    write_split(os.path.join(examples.uri, "Split-eval"), *make_images(eval_count, seed=2))
    return examples


def make_pushed_model(root: str, name: str = "4") -> standard_artifacts.PushedModel:
    pushed = standard_artifacts.PushedModel()
    pushed.uri = os.path.join(root, "TFLitePusher", "pushed_model", name)
    return pushed
