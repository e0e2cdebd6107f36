"""The one reader of TFMA output: metrics (with confidence intervals), confusion matrices, validation.

:func:`load_evaluation` reads the Evaluator's output into an :class:`EvaluationView`: metrics per model
and slice with their 95% jackknife bounds (NaN without ``compute_confidence_intervals``), the
multi-class confusion matrices and the validation result. The single model is called ``candidate``
whether or not the Evaluator had a baseline.

See docs/report.md#reading-tfma-output for the keys, the slice names and the matrices' layout.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shelf_data.contract import LABEL_KEY, LABELS

OVERALL = "overall"
CANDIDATE = "candidate"
BASELINE = "baseline"
WEIGHTED_RECALL = "weighted_macro_recall"
EXAMPLE_COUNT = "example_count"
CONFUSION_PLOT = "multi_class_confusion_matrix_plot"

SliceId = tuple[str, str]  # (feature, value)


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric value with its confidence interval (NaN bounds when TFMA computed none)."""

    value: float
    lo: float = math.nan
    hi: float = math.nan


@dataclasses.dataclass(frozen=True)
class GateRow:
    """One gated metric on the overall slice: value, interval, threshold, verdict, baseline."""

    metric: str
    value: float
    lo: float
    hi: float
    threshold: str
    passed: bool
    baseline: float | None
    delta: float | None


def _model(name: str) -> str:
    return BASELINE if name == BASELINE else CANDIDATE


def _slice_id(slice_key: Any) -> SliceId | None:
    """``(feature, value)`` of a serialized single slice key; None for a crossed slice (not used here)."""
    keys = list(slice_key.single_slice_keys)
    if not keys:
        return (OVERALL, "")
    if len(keys) > 1:
        return None
    key = keys[0]
    kind = key.WhichOneof("kind")
    raw = getattr(key, kind) if kind else ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return (key.column, display_value(key.column, raw))


def display_value(feature: str, value: Any) -> str:
    """A slice value as the report shows it: class names for the label feature, else ``str``."""
    if feature == LABEL_KEY:
        try:
            index = int(float(value))
        except (TypeError, ValueError):
            return str(value)
        if 0 <= index < len(LABELS) and float(value) == index:
            return LABELS[index]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _double(metric_value: Any) -> float | None:
    kind = metric_value.WhichOneof("type")
    if kind == "double_value":
        return float(metric_value.double_value.value)
    if kind == "bounded_value":
        return float(metric_value.bounded_value.value.value)
    return None


def _threshold_text(threshold: Any) -> str:
    parts = []
    if threshold.HasField("value_threshold"):
        if threshold.value_threshold.HasField("lower_bound"):
            parts.append(f">= {threshold.value_threshold.lower_bound.value:.3f}")
        if threshold.value_threshold.HasField("upper_bound"):
            parts.append(f"<= {threshold.value_threshold.upper_bound.value:.3f}")
    if threshold.HasField("change_threshold"):
        parts.append(f"drop <= {-threshold.change_threshold.absolute.value:.3f}")
    return ", ".join(parts)


def thresholds_of(eval_config: Any) -> dict[str, str]:
    """Metric name -> its gate threshold as text (``>= 0.900, drop <= 0.010``), from an EvalConfig."""
    import json

    found: dict[str, str] = {}
    if eval_config is None:
        return found
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            try:
                name = json.loads("{" + metric.config + "}").get("name") if metric.config else None
            except ValueError:
                name = None
            name = name or metric.class_name
            for pst in metric.per_slice_thresholds:
                found[name] = _threshold_text(pst.threshold)
            if metric.HasField("threshold"):
                found[name] = _threshold_text(metric.threshold)
        for name, threshold in spec.thresholds.items():
            found[name] = _threshold_text(threshold)
    return found


class EvaluationView:
    """What one Evaluator run measured, for the candidate and (when there was one) the baseline."""

    def __init__(
        self,
        metrics: Iterable[Any],
        plots: Iterable[Any] = (),
        validation: Any = None,
        eval_config: Any = None,
        labels: Sequence[str] = LABELS,
        uri: str = "",
    ):
        """Build the view from TFMA protos (``MetricsForSlice``, ``PlotsForSlice``, ``ValidationResult``).

        Args:
            metrics: TFMA's metrics per slice (``tfma.load_metrics``).
            plots: TFMA's plots per slice (``tfma.load_plots``); only the confusion-matrix plot is read.
            validation: ``tfma.load_validation_result``, or None when there is none.
            eval_config: the Evaluator's EvalConfig (thresholds for the gate table), or None.
            labels: class names in class-id order.
            uri: the evaluation folder, for messages.
        """
        self.uri = uri
        self.labels: list[str] = list(labels)
        self.eval_config = eval_config
        self._metrics: dict[tuple[SliceId, str], dict[str, Metric]] = {}
        self._diffs: dict[SliceId, dict[str, float]] = {}
        self._matrices: dict[tuple[SliceId, str], np.ndarray] = {}
        self._order: list[SliceId] = []
        models: set[str] = set()
        for per_slice in metrics:
            slice_id = _slice_id(per_slice.slice_key)
            if slice_id is None:
                continue
            self._see(slice_id)
            weighted_seen: set[tuple[str, str]] = set()
            for kv in per_slice.metric_keys_and_values:
                value = _double(kv.value)
                if value is None:
                    continue
                key = kv.key
                models.add(key.model_name)
                name = key.name
                if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
                    class_id = key.sub_key.class_id.value
                    name = f"{name}/{self._label(class_id)}"
                if key.is_diff:
                    self._diffs.setdefault(slice_id, {})[name] = value
                    continue
                model = _model(key.model_name)
                weighted = key.HasField("example_weighted")
                if not weighted and (model, name) in weighted_seen:
                    continue  # the example-weighted value wins over the unweighted duplicate
                if weighted:
                    weighted_seen.add((model, name))
                lo = hi = math.nan
                if kv.HasField("confidence_interval"):
                    lo = _double(kv.confidence_interval.lower_bound)
                    hi = _double(kv.confidence_interval.upper_bound)
                    lo = math.nan if lo is None else lo
                    hi = math.nan if hi is None else hi
                elif kv.value.WhichOneof("type") == "bounded_value":
                    lo = float(kv.value.bounded_value.lower_bound.value)
                    hi = float(kv.value.bounded_value.upper_bound.value)
                self._metrics.setdefault((slice_id, model), {})[name] = Metric(value, lo, hi)
        for per_slice in plots:
            slice_id = _slice_id(per_slice.slice_key)
            if slice_id is None:
                continue
            self._see(slice_id)
            for kv in per_slice.plot_keys_and_values:
                if not kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                    continue
                models.add(kv.key.model_name)
                matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
                if not matrices:
                    continue
                chosen = next((m for m in matrices if m.threshold == 0.0), matrices[0])
                matrix = np.zeros((len(self.labels), len(self.labels)), dtype=np.float64)
                for entry in chosen.entries:
                    a, p = entry.actual_class_id, entry.predicted_class_id
                    if 0 <= a < len(self.labels) and 0 <= p < len(self.labels):
                        matrix[a, p] += entry.num_weighted_examples
                self._matrices[(slice_id, _model(kv.key.model_name))] = matrix
        self.has_baseline: bool = BASELINE in models
        self.validation_ok: bool | None = None
        self.failures: list[str] = []
        if validation is not None:
            self.validation_ok = bool(validation.validation_ok)
            for per_slice in validation.metric_validations_per_slice:
                for failure in per_slice.failures:
                    key = failure.metric_key
                    self.failures.append(
                        f"{key.name}{' (vs baseline)' if key.is_diff else ''}: "
                        f"{_double(failure.metric_value) if failure.HasField('metric_value') else float('nan'):.4f}"
                        f" ({failure.message or 'threshold not met'})"
                    )

    # -- construction helpers --------------------------------------------------

    def _see(self, slice_id: SliceId) -> None:
        if slice_id not in self._order:
            self._order.append(slice_id)

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    # -- public API -----------------------------------------------------------

    def slices(self) -> list[SliceId]:
        """Every slice ``(feature, value)`` seen in the metrics or plots, the overall slice first."""
        rest = sorted((s for s in self._order if s[0] != OVERALL), key=lambda s: (s[0], _sort_key(s[1])))
        return [s for s in self._order if s[0] == OVERALL] + rest

    def slice_features(self) -> list[str]:
        """The features the evaluation is sliced by (without the overall slice), in first-seen order."""
        seen: list[str] = []
        for feature, _ in self._order:
            if feature != OVERALL and feature not in seen:
                seen.append(feature)
        return seen

    def metric(self, name: str, feature: str = OVERALL, value: str = "", model: str = CANDIDATE) -> Metric | None:
        """One metric of one slice and model, or None when TFMA did not compute it."""
        return self._metrics.get(((feature, value), model), {}).get(name)

    def metrics(self, feature: str = OVERALL, value: str = "", model: str = CANDIDATE) -> dict[str, Metric]:
        """Every metric of one slice and model (empty when there is none)."""
        return dict(self._metrics.get(((feature, value), model), {}))

    def diff(self, name: str, feature: str = OVERALL, value: str = "") -> float | None:
        """TFMA's candidate-minus-baseline diff of a metric on a slice (None without a baseline)."""
        return self._diffs.get((feature, value), {}).get(name)

    def slice_table(self) -> pd.DataFrame:
        """One row per slice and model: count, weighted recall and per-class recall with their 95% bounds.

        Columns: ``feature``, ``value``, ``model`` (``candidate`` | ``baseline``), ``count``,
        ``weighted_recall``, ``weighted_recall_lo``, ``weighted_recall_hi`` and, per class,
        ``recall/<class>``, ``recall/<class>_lo``, ``recall/<class>_hi``. NaN where unknown.
        """
        columns = ["feature", "value", "model", "count", "weighted_recall", "weighted_recall_lo", "weighted_recall_hi"]
        for label in self.labels:
            columns += [f"recall/{label}", f"recall/{label}_lo", f"recall/{label}_hi"]
        rows = []
        models = [CANDIDATE, BASELINE] if self.has_baseline else [CANDIDATE]
        for feature, value in self.slices():
            for model in models:
                values = self._metrics.get(((feature, value), model))
                matrix = self._matrices.get(((feature, value), model))
                if values is None and matrix is None:
                    continue
                values = values or {}
                count = values.get(EXAMPLE_COUNT)
                row: dict[str, Any] = {
                    "feature": feature,
                    "value": value,
                    "model": model,
                    "count": count.value if count else (float(matrix.sum()) if matrix is not None else math.nan),
                }
                for prefix, name in [("weighted_recall", WEIGHTED_RECALL)] + [
                    (f"recall/{label}", f"recall/{label}") for label in self.labels
                ]:
                    m = values.get(name)
                    row[prefix] = m.value if m else math.nan
                    row[f"{prefix}_lo"] = m.lo if m else math.nan
                    row[f"{prefix}_hi"] = m.hi if m else math.nan
                rows.append(row)
        return pd.DataFrame(rows, columns=columns)

    def confusion_matrix(
        self, feature: str | None = None, value: str | None = None, model: str = CANDIDATE
    ) -> np.ndarray:
        """Counts, rows = true class, columns = predicted class (zeros where a class is never predicted).

        ``feature`` None: the overall slice. ``feature`` with ``value``: that slice. ``feature``
        without ``value``: the sum over every value of the feature.

        Raises:
            LookupError: no confusion matrix for that slice and model (the message names the evaluation).
        """
        size = len(self.labels)
        if feature is None or feature == OVERALL:
            wanted = [(OVERALL, "")]
        elif value is not None:
            wanted = [(feature, display_value(feature, value))]
        else:
            wanted = [s for s in self._order if s[0] == feature]
        found = [self._matrices[(s, model)] for s in wanted if (s, model) in self._matrices]
        if not found:
            where = OVERALL if feature in (None, OVERALL) else f"{feature}={value if value is not None else '*'}"
            raise LookupError(
                f"no confusion matrix for slice {where}, model {model} in the evaluation {self.uri or '(in memory)'}"
                " (is MultiClassConfusionMatrixPlot in the EvalConfig?)"
            )
        total = np.zeros((size, size), dtype=np.float64)
        for matrix in found:
            total += matrix
        return total

    def gate_rows(self) -> list[GateRow]:
        """The overall slice's gated metrics: value with interval, threshold, pass, baseline value and delta."""
        thresholds = thresholds_of(self.eval_config)
        failed = set()
        for line in self.failures:
            failed.add(line.split(":", 1)[0].replace(" (vs baseline)", ""))
        names = [WEIGHTED_RECALL] + [f"recall/{label}" for label in self.labels] + ["accuracy", EXAMPLE_COUNT]
        rows = []
        for name in names:
            m = self.metric(name)
            if m is None:
                continue
            base = self.metric(name, model=BASELINE) if self.has_baseline else None
            delta = self.diff(name)
            if delta is None and base is not None:
                delta = m.value - base.value
            rows.append(
                GateRow(
                    metric=name,
                    value=m.value,
                    lo=m.lo,
                    hi=m.hi,
                    threshold=thresholds.get(name, ""),
                    passed=name not in failed and not math.isnan(m.value),  # NaN never passes
                    baseline=base.value if base else None,
                    delta=delta,
                )
            )
        return rows

    def gate_metrics(self) -> dict[str, Any]:
        """The overall slice for the release manifest: ``{"source", "overall", "per_class", "diff"}``.

        ``per_class`` holds each class's metrics (``recall``, and ``diff:recall`` with a
        baseline); ``overall`` the other candidate metrics; ``diff`` their candidate-minus-
        baseline values. NaN and infinities become None (JSON has neither).
        """
        overall: dict[str, float | None] = {}
        per_class: dict[str, dict[str, float | None]] = {}
        diff: dict[str, float | None] = {}

        def put(name: str, value: float, is_diff: bool) -> None:
            metric, _, label = name.rpartition("/")
            if metric and label in self.labels:
                per_class.setdefault(label, {})[("diff:" if is_diff else "") + metric] = _finite(value)
            else:
                (diff if is_diff else overall)[name] = _finite(value)

        for name, metric in self.metrics().items():
            put(name, metric.value, False)
        for name, value in self._diffs.get((OVERALL, ""), {}).items():
            put(name, value, True)
        return {"source": self.uri, "overall": overall, "per_class": per_class, "diff": diff}

    def worst_slices(self, min_examples: int, count: int = 5) -> list[tuple[str, float, float]]:
        """The ``count`` slices with the lowest weighted recall among those of ``min_examples`` photos or more.

        Each entry is ``("feature=value", weighted recall, example count)``, the label shown as its class name.
        """
        found = []
        for feature, value in self.slices():
            if feature == OVERALL:
                continue
            values = self.metrics(feature, value)
            recall, examples = values.get(WEIGHTED_RECALL), values.get(EXAMPLE_COUNT)
            if recall is None or math.isnan(recall.value) or examples is None or examples.value < min_examples:
                continue
            found.append((f"{feature}={display_value(feature, value)}", recall.value, examples.value))
        return sorted(found, key=lambda s: s[1])[:count]


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def load_evaluation(
    evaluation_uri: str, labels: Sequence[str] = LABELS, plots: bool = True, eval_config: Any = None
) -> EvaluationView:
    """Read a TFMA output folder (the Evaluator's ``evaluation`` artifact) into an :class:`EvaluationView`.

    ``plots=False`` skips the confusion matrices (the run summary and the manifest need only
    metrics and validation); ``eval_config`` overrides the one TFMA saved in the folder.

    Raises:
        FileNotFoundError: the folder holds no TFMA metrics (the message names it).
    """
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    if not tf.io.gfile.glob(os.path.join(evaluation_uri, "metrics*")):
        raise FileNotFoundError(f"no TFMA metrics in {evaluation_uri} (not an Evaluator output, or it did not finish)")
    metrics = list(tfma.load_metrics(evaluation_uri))
    found_plots = plots and tf.io.gfile.glob(os.path.join(evaluation_uri, "plots*"))
    plot_protos = list(tfma.load_plots(evaluation_uri)) if found_plots else []
    validation = None
    if tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*")):
        validation = tfma.load_validation_result(evaluation_uri)
    if eval_config is None and tf.io.gfile.exists(os.path.join(evaluation_uri, "eval_config.json")):
        from tensorflow_model_analysis.writers import eval_config_writer

        eval_config = eval_config_writer.load_eval_run(evaluation_uri)[0]
    return EvaluationView(metrics, plot_protos, validation, eval_config, labels=labels, uri=evaluation_uri)


def by_slice(table: pd.DataFrame, model: str = CANDIDATE) -> Mapping[SliceId, Mapping[str, Any]]:
    """Rows of :meth:`EvaluationView.slice_table` for one model, keyed by ``(feature, value)``."""
    rows = table[table["model"] == model]
    return {(r["feature"], r["value"]): r.to_dict() for _, r in rows.iterrows()}
