"""The TFLite variants the pusher can build: their one definition.

Kept free of TensorFlow imports so that the config loader and the CLI can
validate variant names without loading TensorFlow.
"""

from __future__ import annotations

VARIANTS: tuple[str, ...] = ("fp32", "fp16", "dynamic", "int8")

# Parity with the SavedModel on the golden samples, on probabilities. The
# quantized variants are judged by agreement and recall instead.
DEFAULT_PARITY_TOLERANCES: dict[str, float] = {"fp32": 1e-5, "fp16": 1e-2}
