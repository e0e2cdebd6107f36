"""The live gate: compare each candidate TFLite variant with the model that is live at ``LATEST``.

Each candidate runs on the eval split next to the live TFLite model; no class's recall may drop by more
than ``max_recall_drop`` and at most ``max_regressions`` of the eval photos may go from right to wrong.
Every result is a :class:`LiveComparison` whose ``status`` is ``compared``, ``no_live_model``,
``not_comparable`` or ``disabled``; only ``compared`` can fail. A live model whose bytes differ from its
manifest raises :class:`bucket.live.LiveModelError`.

:func:`compare` is the pure numpy core; :func:`bucket.live.find_live_model` reads the bucket;
:func:`gate_variant` runs the models (:func:`shelf_tflite.runtime.run_tflite`, imported on first use).

See docs/bucket-contract.md#the-gate-against-what-is-live for the thresholds and each status.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from bucket.live import LiveModel
from components.tflite_pusher.settings import LiveGateConfig

log = logging.getLogger(__name__)

# Statuses of a LiveComparison.
COMPARED = "compared"
NO_LIVE_MODEL = "no_live_model"
NOT_COMPARABLE = "not_comparable"
DISABLED = "disabled"
STATUSES: tuple[str, ...] = (COMPARED, NO_LIVE_MODEL, NOT_COMPARABLE, DISABLED)


# Float slack on the thresholds: a drop of exactly the threshold passes (1.0 - 0.98 is 0.0200000000000000018).
_EPSILON = 1e-9
# Rounding of the floats in to_dict (the manifest): enough for any eval split, readable.
_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class LiveComparison:
    """A candidate variant vs the live model on the eval split: the numbers and the verdict.

    Attributes:
        status: one of :data:`STATUSES` (only ``"compared"`` can fail).
        variant: the candidate variant (None when :func:`compare` was not told).
        live_version: the live version compared with (None without one).
        live_file: the live file compared with.
        live_variant: the variant that live file holds.
        class_names: class names in output order.
        eval_count: eval photos compared (0 when skipped).
        support: per class, eval photos of that class.
        recall_live: per class, the live model's recall (None: class absent).
        recall_candidate: per class, the candidate's recall (None: class absent).
        recall_diff: per class, candidate minus live (None: class absent).
        regressions: photos the live model gets right and the candidate wrong.
        regression_fraction: ``regressions / eval_count`` (None without photos).
        regressions_by_class: regressions per true class.
        improvements: photos the live model gets wrong and the candidate right.
        agreement: fraction of photos where both give the same top-1 class.
        max_recall_drop: the threshold applied.
        max_regressions: the threshold applied.
        passed: the verdict (always True unless ``status == "compared"``).
        reasons: one sentence per failed threshold (empty when passed).
        note: why the comparison was skipped, or what was compared with.
        live_sha256: sha256 of the live file compared with (set by :func:`gate_variant`).
    """

    status: str
    variant: str | None
    live_version: str | None
    live_file: str | None
    live_variant: str | None
    class_names: tuple[str, ...]
    eval_count: int
    support: Mapping[str, int]
    recall_live: Mapping[str, float | None]
    recall_candidate: Mapping[str, float | None]
    recall_diff: Mapping[str, float | None]
    regressions: int
    regression_fraction: float | None
    regressions_by_class: Mapping[str, int]
    improvements: int
    agreement: float | None
    max_recall_drop: float
    max_regressions: float
    passed: bool
    reasons: tuple[str, ...]
    note: str = ""
    live_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}. Received status={self.status!r}")
        if self.status != COMPARED and not self.passed:
            raise ValueError(f"only a {COMPARED!r} result can fail. Received status={self.status!r}, passed=False")

    @property
    def compared(self) -> bool:
        """Both models ran and the thresholds were applied."""
        return self.status == COMPARED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest and the run report (floats rounded, None for undefined values)."""

        def _num(value: float | None) -> float | None:
            return None if value is None else round(float(value), _DIGITS)

        return {
            "status": self.status,
            "passed": self.passed,
            "variant": self.variant,
            "live": {
                "version": self.live_version,
                "file": self.live_file,
                "variant": self.live_variant,
                "sha256": self.live_sha256,
            },
            "eval_count": int(self.eval_count),
            "support": {name: int(count) for name, count in self.support.items()},
            "recall": {
                name: {
                    "live": _num(self.recall_live.get(name)),
                    "candidate": _num(self.recall_candidate.get(name)),
                    "diff": _num(self.recall_diff.get(name)),
                }
                for name in self.class_names
            },
            "regressions": int(self.regressions),
            "regression_fraction": _num(self.regression_fraction),
            "regressions_by_class": {name: int(count) for name, count in self.regressions_by_class.items()},
            "improvements": int(self.improvements),
            "agreement": _num(self.agreement),
            "thresholds": {"max_recall_drop": self.max_recall_drop, "max_regressions": self.max_regressions},
            "reasons": list(self.reasons),
            "note": self.note,
        }


def _skipped(
    status: str,
    note: str,
    config: LiveGateConfig,
    class_names: Sequence[str],
    variant: str | None = None,
    live: LiveModel | None = None,
) -> LiveComparison:
    """A result without a comparison (``passed`` True, ``note`` says why)."""
    names = tuple(class_names)
    return LiveComparison(
        status=status,
        variant=variant,
        live_version=live.version if live else None,
        live_file=live.file if live else None,
        live_variant=live.variant if live else None,
        class_names=names,
        eval_count=0,
        support={},
        recall_live=dict.fromkeys(names),
        recall_candidate=dict.fromkeys(names),
        recall_diff=dict.fromkeys(names),
        regressions=0,
        regression_fraction=None,
        regressions_by_class={},
        improvements=0,
        agreement=None,
        max_recall_drop=config.max_recall_drop,
        max_regressions=config.max_regressions,
        passed=True,
        reasons=(),
        note=note,
        live_sha256=live.sha256 if live else None,
    )


def _predictions(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 class per row; -1 (never right) for a row holding NaN or inf."""
    predicted = np.argmax(probabilities, axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    return np.where(np.all(np.isfinite(probabilities), axis=1), predicted, -1)


def compare(
    candidate_probs: Any,
    live_probs: Any,
    labels_true: Any,
    class_names: Sequence[str],
    config: LiveGateConfig | None = None,
    *,
    variant: str | None = None,
    live_version: str | None = None,
    live_file: str | None = None,
    live_variant: str | None = None,
) -> LiveComparison:
    """Compare the candidate's and the live model's predictions on the same eval photos.

    Pure numpy. Top-1 is the argmax; a row with NaN or inf counts as wrong.
    A class absent from ``labels_true`` has recall None and is not gated.
    A recall drop or regression fraction exactly at its threshold passes.

    Args:
        candidate_probs: candidate probabilities ``[N, classes]``.
        live_probs: live model probabilities ``[N, classes]`` on the same photos.
        labels_true: true class index of each photo ``[N]``.
        class_names: class names in output order (``len == classes``).
        config: thresholds (default :class:`LiveGateConfig`); disabled: the
            numbers are computed, the status is ``"disabled"`` and nothing fails.
        variant: candidate variant, recorded in the result.
        live_version: live version, recorded.
        live_file: live file, recorded.
        live_variant: variant the live file holds, recorded.

    Returns:
        A :class:`LiveComparison`; status ``"not_comparable"`` for an empty eval split.

    Raises:
        ValueError: shapes that do not match each other or ``class_names``,
            or labels outside ``0..classes-1``.
    """
    config = config or LiveGateConfig()
    names = tuple(str(name) for name in class_names)
    candidate = np.asarray(candidate_probs, dtype=np.float64)
    live = np.asarray(live_probs, dtype=np.float64)
    labels = np.asarray(labels_true).reshape(-1)
    if candidate.ndim != 2 or candidate.shape != live.shape:
        raise ValueError(
            f"candidate_probs and live_probs must both be [N, classes]. "
            f"Received shapes {candidate.shape} and {live.shape}"
        )
    if candidate.shape[1] != len(names):
        raise ValueError(f"probabilities have {candidate.shape[1]} classes, class_names has {len(names)}: {names}")
    if len(labels) != len(candidate):
        raise ValueError(f"labels_true has {len(labels)} entries for {len(candidate)} rows of probabilities")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels_true must be integer class indices. Received dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(
            f"labels_true must be in 0..{len(names) - 1}. Received values {sorted(set(labels.tolist()))[:10]}"
        )
    meta = {"variant": variant, "live_version": live_version, "live_file": live_file, "live_variant": live_variant}
    count = int(len(labels))
    if count == 0:
        result = _skipped(NOT_COMPARABLE, "the eval split is empty: nothing to compare", config, names)
        return dataclasses.replace(result, **meta)

    live_right = _predictions(live) == labels
    candidate_right = _predictions(candidate) == labels
    regressed = live_right & ~candidate_right
    improved = ~live_right & candidate_right
    agreement = float(np.mean(_predictions(live) == _predictions(candidate)))

    support: dict[str, int] = {}
    recall_live: dict[str, float | None] = {}
    recall_candidate: dict[str, float | None] = {}
    recall_diff: dict[str, float | None] = {}
    regressions_by_class: dict[str, int] = {}
    for index, name in enumerate(names):
        of_class = labels == index
        support[name] = int(np.sum(of_class))
        regressions_by_class[name] = int(np.sum(regressed & of_class))
        if not support[name]:
            recall_live[name] = recall_candidate[name] = recall_diff[name] = None
            continue
        recall_live[name] = float(np.sum(live_right & of_class) / support[name])
        recall_candidate[name] = float(np.sum(candidate_right & of_class) / support[name])
        recall_diff[name] = recall_candidate[name] - recall_live[name]
    regressions = int(np.sum(regressed))
    fraction = regressions / count

    reasons: list[str] = []
    for name in names:
        diff = recall_diff[name]
        if diff is not None and -diff > config.max_recall_drop + _EPSILON:
            reasons.append(
                f"recall of {name!r} drops by {-diff:.4f} ({recall_live[name]:.4f} live -> "
                f"{recall_candidate[name]:.4f} candidate, {support[name]} eval photos) "
                f"> max_recall_drop {config.max_recall_drop:g}"
            )
    if fraction > config.max_regressions + _EPSILON:
        by_class = ", ".join(f"{name} {n}" for name, n in regressions_by_class.items() if n)
        reasons.append(
            f"{regressions} of {count} eval photos ({fraction:.2%}) are right with the live model and wrong "
            f"with the candidate ({by_class}) > max_regressions {config.max_regressions:g} "
            f"({config.max_regressions:.2%})"
        )
    enabled = config.enabled
    return LiveComparison(
        status=COMPARED if enabled else DISABLED,
        class_names=names,
        eval_count=count,
        support=support,
        recall_live=recall_live,
        recall_candidate=recall_candidate,
        recall_diff=recall_diff,
        regressions=regressions,
        regression_fraction=fraction,
        regressions_by_class=regressions_by_class,
        improvements=int(np.sum(improved)),
        agreement=agreement,
        max_recall_drop=config.max_recall_drop,
        max_regressions=config.max_regressions,
        passed=not reasons if enabled else True,
        reasons=tuple(reasons) if enabled else (),
        note="" if enabled else "live gate disabled in the config: computed, not applied",
        **meta,
    )


def gate_variant(
    candidate_bytes: bytes,
    variant: str,
    live: LiveModel | None,
    eval_images: Any,
    eval_labels: Any,
    config: LiveGateConfig | None,
    class_names: Sequence[str],
    live_probs_cache: MutableMapping[Any, np.ndarray] | None = None,
    *,
    live_reason: str = "",
    candidate_probs: Any = None,
) -> LiveComparison:
    """Run the candidate and the live model on the eval split and :func:`compare` them.

    Not a failure but a skipped result (``passed`` True, ``note`` says why):
    the gate is disabled (nothing is run), there is no live model, the live
    manifest's labels differ from ``class_names``, the live model's input
    image size (height, width) differs from the candidate's (an image-size
    change: the eval photos fit only one of them), the live model does not
    load or run, its output has another number of classes, or the eval split
    is empty. A different channel count is compared (``run_tflite`` feeds
    each model its own input).

    Args:
        candidate_bytes: the candidate TFLite model.
        variant: its variant name.
        live: from :func:`bucket.live.find_live_model`; None when there is none.
        eval_images: the eval split ``[N, H, W, C]`` at the candidate's image size, 0..255.
        eval_labels: its labels ``[N]``.
        config: thresholds (None: defaults).
        class_names: class names in output order.
        live_probs_cache: a dict shared by the variants of one push (one eval
            split): the live model's predictions are stored per live file
            (keyed by its sha256 and the eval shape), so several variants
            compared with the same live file run it once.
        live_reason: when ``live`` is None, why (the message of :func:`bucket.live.find_live_model`).
        candidate_probs: the candidate's probabilities on ``eval_images`` when
            already computed (verification ran it): then it is not run again.

    Returns:
        A :class:`LiveComparison`.
    """
    from shelf_tflite import runtime  # LiteRT's interpreter: only when models are run

    config = config or LiveGateConfig()
    names = tuple(str(name) for name in class_names)

    def skip(status: str, note: str) -> LiveComparison:
        log.info("live gate %s: %s", variant, note)
        return _skipped(status, note, config, names, variant=variant, live=live)

    if not config.enabled:
        return skip(DISABLED, "live gate disabled in the config")
    if live is None:
        return skip(NO_LIVE_MODEL, live_reason or "no live model")
    if live.labels is not None and tuple(live.labels) != names:
        return skip(
            NOT_COMPARABLE,
            f"the live version {live.version} has labels {list(live.labels)}, the candidate {list(names)}",
        )
    candidate_shape = runtime.input_image_shape(candidate_bytes)
    try:
        live_shape = runtime.input_image_shape(live.data)
    except Exception as error:  # noqa: BLE001 - a live model that does not load is not the candidate's fault
        return skip(NOT_COMPARABLE, f"the live model {live.version}/{live.file} does not load: {error}")
    if tuple(live_shape[:2]) != tuple(candidate_shape[:2]):
        return skip(
            NOT_COMPARABLE,
            f"image size changed: the live model {live.version}/{live.file} takes "
            f"{live_shape[0]}x{live_shape[1]}, the candidate {candidate_shape[0]}x{candidate_shape[1]}",
        )
    images = np.asarray(eval_images)
    if len(images) == 0:
        return skip(NOT_COMPARABLE, "the eval split is empty: nothing to compare")

    key = (live.sha256, tuple(images.shape))
    if live_probs_cache is not None and key in live_probs_cache:
        live_probs = live_probs_cache[key]
    else:
        try:
            live_probs = np.asarray(runtime.run_tflite(live.data, images))
        except Exception as error:  # noqa: BLE001 - as above
            return skip(NOT_COMPARABLE, f"the live model {live.version}/{live.file} does not run: {error}")
        if live_probs_cache is not None:
            live_probs_cache[key] = live_probs
    if live_probs.ndim != 2 or live_probs.shape[1] != len(names):
        return skip(
            NOT_COMPARABLE,
            f"the live model {live.version}/{live.file} outputs shape {list(live_probs.shape)}, "
            f"expected [N, {len(names)}]",
        )
    if candidate_probs is None:
        candidate_probs = runtime.run_tflite(candidate_bytes, images)
    result = compare(
        candidate_probs,
        live_probs,
        eval_labels,
        names,
        config,
        variant=variant,
        live_version=live.version,
        live_file=live.file,
        live_variant=live.variant,
    )
    note = f"compared with {live.describe()}"
    result = dataclasses.replace(result, live_sha256=live.sha256)
    result = dataclasses.replace(result, note=note) if result.status == COMPARED else result
    log.info("%s", summary(result))
    return result


def summary(result: LiveComparison) -> str:
    """One line for the logs: verdict, live file, regressions, improvements, agreement, worst recall change."""
    who = f"live gate {result.variant or '?'}"
    if result.live_version:
        who += f" vs {result.live_version}/{result.live_file}"
    if result.status in (NO_LIVE_MODEL, NOT_COMPARABLE) or result.eval_count == 0:
        return _one_line(f"{who}: skipped ({result.status}): {result.note}")
    verdict = "PASSED" if result.passed else "FAILED"
    if result.status == DISABLED:
        verdict = "not applied (disabled)"
    diffs = {name: diff for name, diff in result.recall_diff.items() if diff is not None}
    worst = min(diffs, key=lambda name: diffs[name]) if diffs else None
    worst_text = f"worst recall change {worst} {diffs[worst]:+.4f}" if worst else "no class recall defined"
    line = (
        f"{who}: {verdict} on {result.eval_count} photos: {result.regressions} regressions "
        f"({(result.regression_fraction or 0.0):.2%}, max {result.max_regressions:.2%}), "
        f"{result.improvements} improvements, agreement {result.agreement:.4f}, {worst_text} "
        f"(max drop {result.max_recall_drop:g})"
    )
    if result.reasons:
        line += ": " + "; ".join(result.reasons)
    return _one_line(line)


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines of interpreter errors included) made one space."""
    return " ".join(text.split())
