"""The TFLite variants the pusher can build and the push defaults: their one definition.

The config (``[push]``), the TFLitePusher component, its executor and the
converter's verification all take their defaults from here. Kept free of
TensorFlow imports so that the config loader and the CLI can use it cheaply.
"""

from __future__ import annotations

# ``tasks``: fp16 weights behind an RGB uint8 input (gray conversion inside the
# model) with TFLite metadata, for MediaPipe Tasks' ImageClassifier (shelf_tflite/tasks.py).
VARIANTS: tuple[str, ...] = ("fp32", "fp16", "dynamic", "int8", "tasks")

# Parity with the SavedModel on the golden samples, on probabilities. The
# quantized variants are judged by agreement and recall instead. ``tasks`` has
# the fp16 weights and is fed the gray samples repeated to RGB: same tolerance.
DEFAULT_PARITY_TOLERANCES: dict[str, float] = {"fp32": 1e-5, "fp16": 1e-2, "tasks": 1e-2}

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

# Push defaults.
MODEL_NAME = "shelf_audit"
DEFAULT_VARIANTS: tuple[str, ...] = ("fp16", "int8", "tasks")  # tasks: for apps on MediaPipe Tasks
DEFAULT_VARIANT = "fp16"  # the safe default on handhelds: fp32 accuracy at half the size (gray input, as apps expect)
SIZE_BUDGET_BYTES = 5_000_000
LATENCY_BUDGET_MS = 20.0
DAMAGED_RECALL_TOLERANCE = 0.02
GOLDEN_COUNT = 8
CAMERA_GOLDENS_PER_CLASS = 2  # original eval photos (RGB JPEGs) per class in golden/camera/
REPRESENTATIVE_COUNT = 200


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}. Received variant={variant!r}")
