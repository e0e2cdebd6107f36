"""Argmax recall metrics for TFMA.

TFMA's ``Recall`` with a ``class_id`` thresholds that class's probability
at 0.5 instead of taking the argmax, and its ``macro_average`` cannot be
gated without also gating every class. These metrics derive recall from the
multi-class confusion matrix (argmax at threshold 0, the same matrix the
``MultiClassConfusionMatrixPlot`` uses, so it is computed once) and give one
value per metric: a class-weighted macro recall, or one class's recall.

They are referenced from the EvalConfig by ``module="pipeline.metrics"``, so
the Evaluator imports them from the installed package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tensorflow_model_analysis.metrics import metric_types, metric_util, multi_class_confusion_matrix_metrics


class ArgmaxRecall(metric_types.Metric):
    """Class-weighted mean of per-class argmax recall.

    With one class in ``recall_weights`` this is that class's recall. Classes
    absent from a slice are left out of the mean (their recall is undefined);
    a slice holding none of the weighted classes gives NaN.
    """

    def __init__(self, recall_weights: Mapping[Any, float] | None = None, name: str = "weighted_macro_recall"):
        """Initialise.

        Args:
          recall_weights: class id (int or its string form, as JSON configs
            give it) -> weight. Required. (Not ``class_weights``: TFMA
            reserves that argument name for its own aggregation.)
          name: metric name.
        """
        if not recall_weights:
            raise ValueError(f"ArgmaxRecall needs recall_weights. Received recall_weights={recall_weights}")
        super().__init__(
            metric_util.merge_per_key_computations(_argmax_from_matrix),
            recall_weights={str(k): float(v) for k, v in recall_weights.items()},
            name=name,
        )


metric_types.register_metric(ArgmaxRecall)


class ArgmaxAccuracy(metric_types.Metric):
    """Share of examples whose argmax class is the label, from the same confusion matrix as the recalls.

    Replaces Keras' ``SparseCategoricalAccuracy`` (same value): a Keras metric runs
    in TensorFlow inside every TFMA combiner, which the 20 jackknife samples of the
    confidence intervals multiply; this one is plain Python over the matrix.
    """

    def __init__(self, name: str = "accuracy"):
        """Initialise with the metric's ``name``."""
        super().__init__(metric_util.merge_per_key_computations(_argmax_from_matrix), name=name)


metric_types.register_metric(ArgmaxAccuracy)


def recall_from_matrix(entries: Mapping[tuple[int, int], float], class_weights: Mapping[int, float]) -> float:
    """Weighted mean recall from ``{(actual, predicted): count}``; NaN if no weighted class is present."""
    total = weight_sum = 0.0
    for class_id, weight in class_weights.items():
        row = sum(v for (actual, _), v in entries.items() if actual == class_id)
        if row <= 0:
            continue
        total += weight * entries.get((class_id, class_id), 0.0) / row
        weight_sum += weight
    return total / weight_sum if weight_sum > 0 else math.nan


def accuracy_from_matrix(entries: Mapping[tuple[int, int], float]) -> float:
    """Diagonal over total of ``{(actual, predicted): count}``; NaN for an empty matrix."""
    total = sum(entries.values())
    return sum(v for (a, p), v in entries.items() if a == p) / total if total > 0 else math.nan


def _matrix_computations(
    eval_config: Any, model_name: str, output_name: str, example_weighted: bool
) -> tuple[metric_types.MetricComputations, Any]:
    computations = multi_class_confusion_matrix_metrics.multi_class_confusion_matrices(
        thresholds=[0.0],
        eval_config=eval_config,
        model_name=model_name,
        output_name=output_name,
        example_weighted=example_weighted,
    )
    return computations, computations[-1].keys[-1]


def _flat(metrics: dict, matrices_key: Any) -> dict[tuple[int, int], float]:
    matrices = metrics[matrices_key]
    entries = next(iter(matrices.values()), {}) if matrices else {}
    return {(k.actual_class_id, k.predicted_class_id): v for k, v in entries.items()}


def _argmax_from_matrix(
    name: str,
    eval_config: Any = None,
    model_name: str = "",
    output_name: str = "",
    example_weighted: bool = False,
    recall_weights: Mapping[str, float] | None = None,
) -> metric_types.MetricComputations:
    """The confusion matrix, then from it the class-weighted recall (``recall_weights``) or, without them, accuracy.

    TFMA passes the arguments this signature names (``merge_per_key_computations`` reads it).
    """
    key = metric_types.MetricKey(
        name=name, model_name=model_name, output_name=output_name, example_weighted=example_weighted
    )
    computations, matrices_key = _matrix_computations(eval_config, model_name, output_name, example_weighted)
    class_weights = {int(k): v for k, v in (recall_weights or {}).items()}

    def result(metrics: dict) -> dict:
        entries = _flat(metrics, matrices_key)
        return {key: recall_from_matrix(entries, class_weights) if class_weights else accuracy_from_matrix(entries)}

    computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations
