"""Whether a converted variant may ship: checked against the SavedModel's outputs and the budgets.

:func:`verify_variant` runs a variant (:mod:`shelf_tflite.runtime`) on the
golden samples and the eval split and returns a frozen :class:`VariantReport`;
:func:`summarize` gives one line per variant for logs and the run summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shelf_data.contract import LABELS
from shelf_tflite import runtime
from shelf_tflite import variants as push_defaults
from shelf_tflite.variants import DEFAULT_PARITY_TOLERANCES, QUANTIZATION, check_variant

log = logging.getLogger(__name__)

DAMAGED = "damaged"


def per_class_recall(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """Recall of each class under argmax; ``None`` for a class absent from ``labels``."""
    labels = np.asarray(labels).reshape(-1)
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, dtype=int)
    recall: dict[str, float | None] = {}
    for index, name in enumerate(LABELS):
        support = int(np.sum(labels == index))
        recall[name] = float(np.sum((labels == index) & (predicted == index)) / support) if support else None
    return recall


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
            has run it already (:func:`shelf_tflite.runtime.run_tflite`); None: run here.

    Returns:
        A :class:`VariantReport`.
    """
    check_variant(variant)
    config = config or VerifyConfig()
    reasons: list[str] = []

    golden_out = runtime.run_tflite(model_bytes, golden_images)
    parity = float(np.max(np.abs(golden_out - golden_reference))) if len(golden_out) else 0.0
    tolerance = config.parity_tolerances.get(variant)
    if tolerance is not None and not parity <= tolerance:
        reasons.append(f"parity: max abs diff {parity:.3g} on {len(golden_out)} golden samples > {tolerance:g}")

    eval_out = runtime.run_tflite(model_bytes, eval_images) if eval_outputs is None else np.asarray(eval_outputs)
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
    latency = runtime.measure_latency_ms(model_bytes, num_threads=1, repeats=config.latency_repeats)
    if not latency <= config.latency_budget_ms:
        reasons.append(f"latency: {latency:.2f} ms at 1 thread > budget {config.latency_budget_ms:g} ms")

    report = VariantReport(
        variant=variant,
        quantization=QUANTIZATION[variant],
        bytes=size,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        latency_ms=round(latency, 4),
        io=runtime.describe_io(model_bytes),
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
