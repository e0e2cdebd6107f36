"""Build the TFMA EvalConfig that encodes the evaluation policy.

Blessing needs all of: class-weighted macro recall at or above its floor; each configured per-class
recall at or above its floor; and, when a baseline exists, no drop beyond ``max_drop`` against it. Recall
is argmax recall from :mod:`pipeline.metrics`; the thresholds are bound to the overall slice only, and
every class recall has a floor there (``>= 0`` without a configured one), so NaN never passes.
tests/test_eval_config.py shows the TFMA 0.47 behaviours this works around.

See docs/pipeline.md#evaluation-policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import tensorflow_model_analysis as tfma
from google.protobuf.wrappers_pb2 import BoolValue
from tensorflow_model_analysis.constants import TF_GENERIC

from shelf_data.contract import LABEL_KEY, LABELS

WEIGHTED_RECALL = "weighted_macro_recall"
ACCURACY = "accuracy"
EXAMPLE_COUNT = "example_count"
_METRICS_MODULE = "pipeline.metrics"


def class_recall_name(label: str) -> str:
    """Metric name of one class's recall, e.g. ``recall/damaged``."""
    return f"recall/{label}"


def _recall(
    name: str, class_weights: Mapping[int, float], gate: tfma.PerSliceMetricThreshold | None = None
) -> tfma.MetricConfig:
    config = json.dumps({"name": name, "recall_weights": {str(k): v for k, v in class_weights.items()}})
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    # Thresholds sit on the MetricConfig: in TFMA 0.47.1 the spec-level
    # ``per_slice_thresholds`` map builds keys that never match computed metrics.
    return tfma.MetricConfig(
        class_name="ArgmaxRecall",
        module=_METRICS_MODULE,
        config=config[1:-1],
        per_slice_thresholds=[gate] if gate else [],
    )


def _overall_floor(floor: float, max_drop: float | None = None) -> tfma.PerSliceMetricThreshold:
    threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}))
    if max_drop is not None:
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -float(max_drop)}
            )
        )
    return tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)


def build_eval_config(
    class_weights: Mapping[str, float],
    weighted_recall_floor: float,
    class_recall_floors: Mapping[str, float],
    max_drop: float | None,
    slices: Sequence[str] = (),
    label_key: str = LABEL_KEY,
    signature_name: str = "serving_default",
    confidence_intervals: bool = True,
) -> tfma.EvalConfig:
    """Return the EvalConfig for the gate.

    Args:
      class_weights: label name -> weight in the macro average (damaged 2x).
      weighted_recall_floor: lower bound of the class-weighted macro recall.
      class_recall_floors: label name -> lower bound of that class's recall.
      max_drop: largest allowed drop of weighted recall against the baseline;
        None leaves the baseline out of the gate.
      slices: feature keys to slice by, in addition to the overall slice.
      label_key: the label feature in the raw examples.
      signature_name: the model signature TFMA feeds serialized examples to.
      confidence_intervals: have TFMA compute 95% confidence intervals
        (jackknife, 20 buckets, TFMA 0.47's default) for every scalar metric on
        every slice; the HTML report shows them. The gate still compares the
        metric's own value (the unsampled one) with its threshold. Every metric
        is plain Python over one confusion matrix (:mod:`pipeline.metrics`), so
        the intervals stay cheap (no Keras metric in the combiners).
    """
    for name in list(class_weights) + list(class_recall_floors):
        if name not in LABELS:
            raise ValueError(f"unknown class {name!r}; classes are {LABELS}")
    weights = {LABELS.index(name): float(w) for name, w in class_weights.items()}
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount", config=f'"name": "{EXAMPLE_COUNT}"'),
        tfma.MetricConfig(class_name="ArgmaxAccuracy", module=_METRICS_MODULE, config=f'"name": "{ACCURACY}"'),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        _recall(WEIGHTED_RECALL, weights, _overall_floor(weighted_recall_floor, max_drop)),
    ]
    for i, label in enumerate(LABELS):
        # A class without a floor still gets ">= 0": any recall passes it, NaN (the class absent from eval) fails.
        floor = class_recall_floors.get(label, 0.0)
        metrics.append(_recall(class_recall_name(label), {i: 1.0}, _overall_floor(floor)))
    return tfma.EvalConfig(
        # The model type is given, not probed: TFMA would otherwise load each model with Keras once to
        # find out (then again to evaluate), and Keras' reconstruction was most of the Evaluator's time.
        # The serving signature is plain TensorFlow, so TFMA's generic loader serves it.
        model_specs=[tfma.ModelSpec(signature_name=signature_name, label_key=label_key, model_type=TF_GENERIC)],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[key]) for key in slices],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        # No default metrics: the model's compiled Keras metrics (loss, an unweighted accuracy) would run
        # in TensorFlow inside every combiner, 20 times more with the jackknife's samples.
        options=tfma.Options(
            compute_confidence_intervals=BoolValue(value=confidence_intervals),
            include_default_metrics=BoolValue(value=False),
        ),
    )
