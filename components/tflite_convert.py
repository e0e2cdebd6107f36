"""Convert the exported image signature to TFLite variants and verify them.

Our own converter rather than TFX's ``TFLiteRewriter``: the rewriter drops
converter options and cannot make a true integer model. Every function here
is a pure step the TFLite pusher composes (and the benchmark reuses):

- :func:`convert` builds one variant (``fp32``, ``fp16``, ``dynamic``,
  ``int8``, ``tasks``) from the ``serving_image`` signature;
  :func:`convert_many` builds several, the gray ones from one converter. ``serving_default``
  parses ``tf.Example`` protos and would need Flex ops, so it is never
  converted. ``tasks`` (RGB uint8 input, gray conversion inside, TFLite
  metadata for MediaPipe Tasks) is built by :mod:`components.tasks_variant`.
- :func:`run_tflite` / :func:`measure_latency_ms` run a converted model the
  way the handheld does (batch 1, raw 0..255 pixels), with LiteRT's
  interpreter (``ai_edge_litert``, the runtime the Android app ships; the
  conversion itself is TensorFlow's converter). They take our gray
  images for every variant: an RGB model gets the gray channel repeated
  (its BT.601 gray of ``(g, g, g)`` is ``g``), so outputs stay comparable.
- :func:`verify_variant` checks a variant against the SavedModel's outputs
  and the budgets and returns a frozen :class:`VariantReport`.
- :func:`load_images` reads the Transform output examples (``pixels`` is a
  serialized uint8 tensor) that feed int8 calibration and verification.

int8 contract: integer builtin ops only, ``uint8`` input with scale 1.0 and
zero point 0 (the app feeds raw pixels, no arithmetic), ``float32`` output.
We keep the output in float because the model contract promises
probabilities; the final dequantize costs nothing measurable and the app
needs no output scale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from components import variants as push_defaults
from components.variants import DEFAULT_PARITY_TOLERANCES as DEFAULT_PARITY_TOLERANCES
from components.variants import VARIANTS as VARIANTS
from shelf_data.contract import LABELS
from shelf_model import features

log = logging.getLogger(__name__)

# The exported signature and the transformed-example keys are the Trainer's and Transform's.
DEFAULT_SIGNATURE = features.IMAGE_SIGNATURE
INPUT_KEY = features.IMAGE_INPUT
OUTPUT_KEY = features.PROBABILITIES
PIXELS_KEY = features.PIXELS_KEY
LABEL_KEY = features.LABEL_KEY
DAMAGED = "damaged"

# Human-readable quantization recorded in the manifest.
QUANTIZATION: dict[str, str] = {
    "fp32": "none (float32 weights and activations)",
    "fp16": "float16 weights, float32 compute",
    "dynamic": "dynamic range (int8 weights, float activations)",
    "int8": "full integer (int8 weights and activations, uint8 input, float32 output)",
    "tasks": (
        "float16 weights, float32 compute, RGB uint8 input, gray conversion inside the model, "
        "TFLite metadata for MediaPipe Tasks"
    ),
}


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}. Received variant={variant!r}")


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


def convert(
    saved_model_dir: str,
    variant: str,
    representative_images: np.ndarray | None = None,
    signature_key: str = DEFAULT_SIGNATURE,
) -> bytes:
    """Convert one signature of a SavedModel to a TFLite flatbuffer.

    Args:
        saved_model_dir: SavedModel folder (the Model artifact's ``Format-Serving``).
        variant: one of :data:`VARIANTS`. ``tasks`` is delegated to
            :func:`components.tasks_variant.convert_tasks`.
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
    (tested). ``loaded``: the SavedModel as :func:`load_saved_model` returned it
    for this folder, spares loading it again (:func:`saved_model_converter`).
    Other arguments as :func:`convert`.
    """
    for variant in variants:
        _check_variant(variant)
    if "int8" in variants and (representative_images is None or len(representative_images) == 0):
        raise ValueError("variant='int8' needs representative_images (training images, 0..255)")
    converter = None
    blobs: dict[str, bytes] = {}
    for variant in variants:
        if variant == "tasks":
            # Imported here: tasks_variant imports this module for its converter.
            from components import tasks_variant

            blobs[variant] = tasks_variant.convert_tasks(
                saved_model_dir, labels=LABELS, signature_key=signature_key, loaded=loaded
            )
            continue
        if converter is None:
            converter = saved_model_converter(saved_model_dir, signature_key, loaded)
        _set_options(converter, variant, representative_images)
        blobs[variant] = bytes(converter.convert())
    return blobs


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
    # What from_saved_model does after its load (TensorFlow 2.16): the model type goes into the
    # flatbuffer's conversion metadata, then the converter holds the loaded object.
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion_metadata_fb
    from tensorflow.lite.python import lite

    lite.TFLiteConverterBase._set_original_model_type(conversion_metadata_fb.ModelType.TF_SAVED_MODEL)  # noqa: SLF001
    converter = lite.TFLiteSavedModelConverterV2(saved_model_dir, {tf.saved_model.SERVING}, [signature_key], loaded)
    if not converter.saved_model_dir:  # TensorFlow would convert this one from its functions: let it load
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature_key])
    return converter


def _set_options(converter: tf.lite.TFLiteConverter, variant: str, representative_images: np.ndarray | None) -> None:
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


def input_image_shape(model_bytes: bytes) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the model's image input, as the Trainer exported it."""
    detail = Interpreter(model_content=model_bytes).get_input_details()[0]
    return tuple(int(d) for d in detail["shape"][1:])


def _interpreter(model_bytes: bytes, num_threads: int) -> Interpreter:
    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    # The signature has a dynamic batch; the handheld always runs batch 1. The
    # image size is the model's own (the Trainer's), never assumed here.
    interpreter.resize_tensor_input(detail["index"], [1, *input_image_shape(model_bytes)])
    interpreter.allocate_tensors()
    return interpreter


def _quantize_input(images: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        values = np.asarray(images, dtype=np.float32)
        if scale:
            values = np.round(values / scale + zero_point)
        return np.clip(values, info.min, info.max).astype(dtype)
    return np.asarray(images, dtype=dtype)


_INPUT_CHUNK = 256  # images converted to a model's input at a time


def _model_input(images: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Adapt images ``[N, h, w, 1]`` (or already ``[N, h, w, c]``) to the model's input channels and dtype.

    Gray models take them as they are. An RGB model (the ``tasks`` variant)
    gets the gray channel repeated to 3: its BT.601 gray of ``(g, g, g)`` is
    ``0.299 g + 0.587 g + 0.114 g = g``, so its outputs match the gray
    variants' on the same images. Then dtype and quantization as the model
    wants them; an integer input without quantization parameters (raw uint8
    pixels) gets whole values, rounded.
    """
    height, width, channels = (int(d) for d in detail["shape"][1:])
    images = np.asarray(images)
    if not (channels != 1 and images.ndim == 4 and images.shape[-1] == channels):
        images = images.reshape((-1, height, width, 1))
        if channels != 1:
            images = np.repeat(images, channels, axis=-1)
    if np.issubdtype(detail["dtype"], np.integer) and not detail["quantization"][0]:
        images = np.round(np.asarray(images, dtype=np.float32))
    return _quantize_input(images, detail)


def _dequantize_output(values: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    if np.issubdtype(detail["dtype"], np.integer):
        scale, zero_point = detail["quantization"]
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32)


def run_tflite(model_bytes: bytes, images: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a TFLite model image by image (batch 1, as on the handheld).

    Args:
        model_bytes: a model from :func:`convert`.
        images: ``[N, 128, 128, 1]`` pixels in 0..255 (any numeric dtype);
            quantized inputs are scaled with the model's own scale/zero point,
            and an RGB model gets the gray channel repeated (or ``[N, 128, 128, 3]``
            colour images as they are).
        num_threads: interpreter threads.

    Returns:
        float32 probabilities ``[N, num_classes]``.
    """
    interpreter = _interpreter(model_bytes, num_threads)
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    outputs = []
    # Converted a chunk at a time: the whole eval split at once as float RGB (the tasks variant) was
    # 1.3 GB of temporary arrays at 5,365 eval photos, the pusher's peak memory.
    for start in range(0, len(images), _INPUT_CHUNK):
        for image in _model_input(images[start : start + _INPUT_CHUNK], input_detail):
            interpreter.set_tensor(input_detail["index"], image[None])
            interpreter.invoke()
            outputs.append(_dequantize_output(interpreter.get_tensor(output_detail["index"])[0], output_detail))
    if not outputs:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    return np.stack(outputs).astype(np.float32)


def measure_latency_ms(model_bytes: bytes, num_threads: int = 1, repeats: int = 50, warmup: int = 5) -> float:
    """Median wall time of one batch-1 invocation, in milliseconds.

    Args:
        model_bytes: a model from :func:`convert`.
        num_threads: interpreter threads (record 1 and 2: dynamic-range
            models are known to be far slower at 2 threads on some CPUs).
        repeats: timed invocations; the median resists scheduler noise.
        warmup: untimed invocations first (XNNPACK packs weights lazily).

    Returns:
        The median latency in milliseconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1. Received repeats={repeats}")
    interpreter = _interpreter(model_bytes, num_threads)
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    height, width, _ = input_image_shape(model_bytes)
    image = _model_input(rng.integers(0, 256, size=(1, height, width, 1)), detail)
    interpreter.set_tensor(detail["index"], image)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def describe_io(model_bytes: bytes) -> dict[str, dict[str, Any]]:
    """Input/output shape, dtype and quantization of a model, JSON-ready."""
    interpreter = Interpreter(model_content=model_bytes)

    def _one(detail: Mapping[str, Any]) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        shape = [int(d) for d in detail["shape_signature"]]
        return {
            "name": str(detail["name"]),
            # Batch is dynamic in the flatbuffer; the app runs batch 1.
            "shape": [1 if d < 0 else d for d in shape],
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }

    return {
        "input": _one(interpreter.get_input_details()[0]),
        "output": _one(interpreter.get_output_details()[0]),
    }


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


def per_class_recall(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """Recall of each class under argmax; ``None`` for a class absent from ``labels``."""
    labels = np.asarray(labels).reshape(-1)
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, dtype=int)
    recall: dict[str, float | None] = {}
    for index, name in enumerate(LABELS):
        support = int(np.sum(labels == index))
        recall[name] = float(np.sum((labels == index) & (predicted == index)) / support) if support else None
    return recall


def select_golden_indices(labels: np.ndarray, count: int) -> list[int]:
    """Pick ``count`` eval examples, round-robin over the classes present.

    Golden samples should exercise every output, not only the majority class.
    """
    labels = np.asarray(labels).reshape(-1)
    pools = [list(np.flatnonzero(labels == c)) for c in range(len(LABELS))]
    chosen: list[int] = []
    while len(chosen) < min(count, len(labels)):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(int(pool.pop(0)))
    return sorted(chosen)


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Budgets and tolerances that decide whether a variant may ship."""

    size_budget_bytes: int = push_defaults.SIZE_BUDGET_BYTES
    latency_budget_ms: float = push_defaults.LATENCY_BUDGET_MS
    damaged_recall_tolerance: float = push_defaults.DAMAGED_RECALL_TOLERANCE
    parity_tolerances: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PARITY_TOLERANCES))
    latency_repeats: int = 50


@dataclasses.dataclass(frozen=True)
class VariantReport:
    """What verification measured for one variant, and the verdict.

    ``reasons`` names every failed check (empty when ``passed``).
    """

    variant: str
    quantization: str
    bytes: int
    sha256: str
    latency_ms: float
    io: Mapping[str, Any]
    parity_max_abs_diff: float
    parity_tolerance: float | None
    golden_count: int
    eval_count: int
    agreement: float | None
    recall: Mapping[str, float | None]
    savedmodel_recall: Mapping[str, float | None]
    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest's per-variant entry, minus the file name)."""
        out = dataclasses.asdict(self)
        out["reasons"] = list(self.reasons)
        return out


def verify_variant(
    model_bytes: bytes,
    variant: str,
    *,
    golden_images: np.ndarray,
    golden_reference: np.ndarray,
    eval_images: np.ndarray,
    eval_labels: np.ndarray,
    eval_reference: np.ndarray,
    config: VerifyConfig | None = None,
    eval_outputs: np.ndarray | None = None,
) -> VariantReport:
    """Check a converted variant against the SavedModel and the budgets.

    Rules: parity on the golden samples within ``config.parity_tolerances``
    (variants without a tolerance are not parity-checked); ``damaged`` recall
    on the eval split no more than ``damaged_recall_tolerance`` below the
    SavedModel's; size and 1-thread latency within their budgets.

    Args:
        model_bytes: the converted model.
        variant: its variant name.
        golden_images: a few eval images (uint8 0..255).
        golden_reference: the SavedModel's probabilities for them.
        eval_images: the whole eval split.
        eval_labels: its labels.
        eval_reference: the SavedModel's probabilities for it.
        config: budgets and tolerances.
        eval_outputs: the variant's probabilities on ``eval_images`` when the caller
            has run it already (:func:`run_tflite`); None: run here.

    Returns:
        A :class:`VariantReport`.
    """
    _check_variant(variant)
    config = config or VerifyConfig()
    reasons: list[str] = []

    golden_out = run_tflite(model_bytes, golden_images)
    parity = float(np.max(np.abs(golden_out - golden_reference))) if len(golden_out) else 0.0
    tolerance = config.parity_tolerances.get(variant)
    if tolerance is not None and not parity <= tolerance:
        reasons.append(f"parity: max abs diff {parity:.3g} on {len(golden_out)} golden samples > {tolerance:g}")

    eval_out = run_tflite(model_bytes, eval_images) if eval_outputs is None else np.asarray(eval_outputs)
    agreement = (
        float(np.mean(np.argmax(eval_out, axis=1) == np.argmax(eval_reference, axis=1))) if len(eval_out) else None
    )
    recall = per_class_recall(eval_labels, eval_out)
    reference_recall = per_class_recall(eval_labels, eval_reference)
    ours, theirs = recall[DAMAGED], reference_recall[DAMAGED]
    if ours is None or theirs is None:
        log.warning("%s: no %r examples in the eval split; recall check skipped", variant, DAMAGED)
    elif ours < theirs - config.damaged_recall_tolerance - 1e-9:
        reasons.append(
            f"drift: {DAMAGED} recall {ours:.3f} is more than {config.damaged_recall_tolerance:g} "
            f"below the SavedModel's {theirs:.3f}"
        )

    size = len(model_bytes)
    if size > config.size_budget_bytes:
        reasons.append(f"size: {size} bytes > budget {config.size_budget_bytes}")
    latency = measure_latency_ms(model_bytes, num_threads=1, repeats=config.latency_repeats)
    if not latency <= config.latency_budget_ms:
        reasons.append(f"latency: {latency:.2f} ms at 1 thread > budget {config.latency_budget_ms:g} ms")

    report = VariantReport(
        variant=variant,
        quantization=QUANTIZATION[variant],
        bytes=size,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        latency_ms=round(latency, 4),
        io=describe_io(model_bytes),
        parity_max_abs_diff=parity,
        parity_tolerance=tolerance,
        golden_count=len(golden_out),
        eval_count=len(eval_out),
        agreement=agreement,
        recall=recall,
        savedmodel_recall=reference_recall,
        passed=not reasons,
        reasons=tuple(reasons),
    )
    log.info(
        "%s: %d bytes, %.2f ms, parity %.2g, agreement %s, %s",
        variant,
        size,
        latency,
        parity,
        "n/a" if agreement is None else f"{agreement:.4f}",
        "passed" if report.passed else "FAILED: " + "; ".join(reasons),
    )
    return report


def _split_files(split_dir: str) -> list[str]:
    files = tf.io.gfile.glob(f"{split_dir.rstrip('/')}/*.gz")
    if not files:
        files = [f for f in tf.io.gfile.glob(f"{split_dir.rstrip('/')}/*") if not tf.io.gfile.isdir(f)]
    return sorted(files)


def load_images(split_dir: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read images and labels from one split of the Transform output examples.

    Args:
        split_dir: e.g. ``<examples.uri>/Split-eval`` (TFRecords, plain or GZIP ``*.gz``).
        limit: read at most this many examples (in file order).

    Returns:
        ``(images uint8 [N, 128, 128, 1], labels int64 [N])``.

    Raises:
        FileNotFoundError: no files in ``split_dir``.
    """
    files = _split_files(split_dir)
    if not files:
        raise FileNotFoundError(f"no TFRecord files in {split_dir}")
    spec = {
        PIXELS_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(files, compression_type=features.compression_type(files))
    if limit is not None:
        dataset = dataset.take(limit)

    def _decode(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        # The pixels are a serialized tensor that carries its own shape (the Trainer's image size).
        return tf.io.parse_tensor(parsed[PIXELS_KEY], out_type=tf.uint8), parsed[LABEL_KEY]

    images, labels = [], []
    for pixels, label in dataset.map(_decode).batch(256):
        images.append(pixels.numpy())
        labels.append(label.numpy())
    if not images:
        return np.zeros((0, 0, 0, 1), dtype=np.uint8), np.zeros((0,), dtype=np.int64)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def sample_split(split_dir: str, count: int, seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """A uniform random sample of ``count`` images from one split, read in one pass.

    Each record draws a random key and the ``count`` smallest keys win (bottom-k
    sampling, a reservoir sample in batches). Memory holds ``count`` serialized
    images plus one batch whatever the split's size (the whole train split of a
    54,000-photo window would be 0.7 GB decoded), and only the chosen images are
    decoded. Deterministic for a given split and seed; returned in file order.
    """
    files = _split_files(split_dir)
    if not files:
        raise FileNotFoundError(f"no TFRecord files in {split_dir}")
    spec = {PIXELS_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = (
        tf.data.TFRecordDataset(files, compression_type=features.compression_type(files))
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec)[PIXELS_KEY])
    )
    rng = np.random.default_rng(seed)
    keys = np.zeros(0, dtype=np.float64)
    order = np.zeros(0, dtype=np.int64)  # position of each kept record in the split
    kept = np.zeros(0, dtype=object)  # its serialized pixels
    seen = 0
    for serialized in dataset.as_numpy_iterator():
        keys = np.concatenate([keys, rng.random(len(serialized))])
        order = np.concatenate([order, np.arange(seen, seen + len(serialized))])
        kept = np.concatenate([kept, np.asarray(list(serialized), dtype=object)])
        seen += len(serialized)
        if len(keys) > count:
            best = np.argpartition(keys, count - 1)[:count] if count > 0 else np.zeros(0, dtype=np.int64)
            keys, order, kept = keys[best], order[best], kept[best]
    if not len(kept):
        return np.zeros((0, 0, 0, 1), dtype=np.uint8)
    in_file_order = np.argsort(order)
    return np.stack([tf.io.parse_tensor(kept[i], out_type=tf.uint8).numpy() for i in in_file_order])


def summarize(reports: Sequence[VariantReport]) -> str:
    """One line per variant for logs and the run summary."""

    def _fmt(value: float | None) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    return "\n".join(
        f"{r.variant}: {r.bytes} B, {r.latency_ms:.2f} ms, agreement {_fmt(r.agreement)}, "
        f"{DAMAGED} recall {_fmt(r.recall.get(DAMAGED))} (SavedModel {_fmt(r.savedmodel_recall.get(DAMAGED))}), "
        + ("ok" if r.passed else "rejected: " + "; ".join(r.reasons))
        for r in reports
    )
