"""Run a converted model the way the handheld does: batch 1, raw 0..255 pixels, LiteRT's interpreter.

:func:`run_tflite` / :func:`measure_latency_ms` run a model with LiteRT's
interpreter (``ai_edge_litert``, the runtime the Android app ships; the
conversion itself is TensorFlow's converter, :mod:`shelf_tflite.convert`).
They take our gray images for every variant: an RGB model gets the gray
channel repeated (its BT.601 gray of ``(g, g, g)`` is ``g``), so outputs stay
comparable. :func:`describe_io` and :func:`input_image_shape` read a model's
input and output tensors.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from shelf_data.contract import LABELS


def input_image_shape(model_bytes: bytes) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the model's image input, as the Trainer exported it."""
    detail = Interpreter(model_content=model_bytes).get_input_details()[0]
    height, width, channels = (int(d) for d in detail["shape"][1:])
    return height, width, channels


def _interpreter(model_bytes: bytes, num_threads: int) -> Interpreter:
    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    # The signature has a dynamic batch; the handheld always runs batch 1. The
    # image size is the model's own (the Trainer's), never assumed here.
    interpreter.resize_tensor_input(detail["index"], [1, *(int(d) for d in detail["shape"][1:])])
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
        model_bytes: a model from :func:`shelf_tflite.build.convert`.
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
        model_bytes: a model from :func:`shelf_tflite.build.convert`.
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
    height, width = (int(d) for d in detail["shape"][1:3])
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
