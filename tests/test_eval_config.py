"""Unit tests of the gate's TFMA EvalConfig and the argmax recall metrics, incl. the blessing flip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from pipeline import metrics
from pipeline.eval_config import ACCURACY, EXAMPLE_COUNT, WEIGHTED_RECALL, build_eval_config, class_recall_name
from shelf_data.contract import LABELS

pytestmark = pytest.mark.unit

CLASS_WEIGHTS = {"ok": 1.0, "misplaced": 1.0, "damaged": 2.0}
SLICES = ("label", "lane_id", "device_id", "lighting")
RECALL_NAMES = [class_recall_name(label) for label in LABELS]


def _metrics_by_name(config: tfma.EvalConfig) -> dict[str, tfma.MetricConfig]:
    (spec,) = config.metrics_specs
    return {json.loads("{" + m.config + "}").get("name", m.class_name): m for m in spec.metrics}


def _lower_bound(metric: tfma.MetricConfig) -> float:
    (gate,) = metric.per_slice_thresholds
    return gate.threshold.value_threshold.lower_bound.value


# --- Structure -------------------------------------------------------------------


@pytest.fixture
def gate_config() -> tfma.EvalConfig:
    return build_eval_config(CLASS_WEIGHTS, 0.9, {"damaged": 0.85}, max_drop=0.01, slices=SLICES)


def test_model_spec_and_slices(gate_config):
    (spec,) = gate_config.model_specs
    assert (spec.label_key, spec.signature_name) == ("label", "serving_default")
    assert list(gate_config.slicing_specs) == [tfma.SlicingSpec()] + [
        tfma.SlicingSpec(feature_keys=[key]) for key in SLICES
    ]


def test_metrics_present(gate_config):
    by_name = _metrics_by_name(gate_config)
    assert set(by_name) == {EXAMPLE_COUNT, ACCURACY, "MultiClassConfusionMatrixPlot", WEIGHTED_RECALL, *RECALL_NAMES}
    assert by_name[ACCURACY].class_name == "ArgmaxAccuracy"  # plain Python: cheap under the jackknife
    for name in (WEIGHTED_RECALL, *RECALL_NAMES):
        assert (by_name[name].class_name, by_name[name].module) == ("ArgmaxRecall", "pipeline.metrics")


def test_recall_weights_come_from_class_weights_by_label_index(gate_config):
    by_name = _metrics_by_name(gate_config)
    weights = {
        name: json.loads("{" + by_name[name].config + "}")["recall_weights"]
        for name in (WEIGHTED_RECALL, *RECALL_NAMES)
    }
    assert weights[WEIGHTED_RECALL] == {"0": 1.0, "1": 1.0, "2": 2.0}
    assert weights["recall/ok"] == {"0": 1.0}
    assert weights["recall/misplaced"] == {"1": 1.0}
    assert weights["recall/damaged"] == {"2": 1.0}


def test_thresholds_are_bound_to_the_overall_slice_only(gate_config):
    (spec,) = gate_config.metrics_specs
    # Spec-level thresholds would apply to every slice (NaN recall on slices missing a class fails them).
    assert len(spec.thresholds) == 0 and len(spec.per_slice_thresholds) == 0
    gated = []
    for name, metric in _metrics_by_name(gate_config).items():
        assert not metric.HasField("threshold"), name
        for gate in metric.per_slice_thresholds:
            assert list(gate.slicing_specs) == [tfma.SlicingSpec()], name
            gated.append(name)
    # Every class recall is gated (>= 0 without a floor) so that NaN, a class absent from eval, never passes.
    assert sorted(gated) == sorted([WEIGHTED_RECALL, *RECALL_NAMES])
    assert _lower_bound(_metrics_by_name(gate_config)["recall/ok"]) == 0.0


def test_floors_and_change_threshold(gate_config):
    by_name = _metrics_by_name(gate_config)
    assert _lower_bound(by_name[WEIGHTED_RECALL]) == pytest.approx(0.9)
    assert _lower_bound(by_name["recall/damaged"]) == pytest.approx(0.85)
    change = by_name[WEIGHTED_RECALL].per_slice_thresholds[0].threshold.change_threshold
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert change.absolute.value == pytest.approx(-0.01)
    # Per-class floors are absolute, never relative to the baseline.
    assert not by_name["recall/damaged"].per_slice_thresholds[0].threshold.HasField("change_threshold")


def test_confidence_intervals_on_by_default_and_can_be_turned_off():
    assert build_eval_config({"ok": 1.0}, 0.5, {}, None).options.compute_confidence_intervals.value is True
    off = build_eval_config({"ok": 1.0}, 0.5, {}, None, confidence_intervals=False)
    assert off.options.compute_confidence_intervals.value is False


def test_no_change_threshold_without_max_drop():
    config = build_eval_config(CLASS_WEIGHTS, 0.9, {"damaged": 0.85, "ok": 0.5}, max_drop=None)
    by_name = _metrics_by_name(config)
    for name in (WEIGHTED_RECALL, "recall/damaged", "recall/ok"):
        assert not by_name[name].per_slice_thresholds[0].threshold.HasField("change_threshold"), name
    assert _lower_bound(by_name["recall/ok"]) == pytest.approx(0.5)
    assert list(config.slicing_specs) == [tfma.SlicingSpec()]


def test_zero_max_drop_still_gates_against_the_baseline():
    by_name = _metrics_by_name(build_eval_config(CLASS_WEIGHTS, 0.9, {}, max_drop=0.0))
    assert by_name[WEIGHTED_RECALL].per_slice_thresholds[0].threshold.HasField("change_threshold")


@pytest.mark.parametrize(("weights", "floors"), [({"ok": 1.0, "broken": 1.0}, {}), (CLASS_WEIGHTS, {"dented": 0.5})])
def test_unknown_class_is_refused(weights, floors):
    with pytest.raises(ValueError, match="unknown class"):
        build_eval_config(weights, 0.9, floors, max_drop=None)


# --- pipeline.metrics ----------------------------------------------------------------


def test_recall_from_matrix_weighted_mean():
    entries = {(0, 0): 8.0, (0, 1): 2.0, (1, 1): 3.0, (1, 2): 1.0, (2, 2): 5.0, (2, 0): 5.0}
    assert metrics.recall_from_matrix(entries, {0: 1.0, 1: 1.0, 2: 2.0}) == pytest.approx((0.8 + 0.75 + 2 * 0.5) / 4)
    assert metrics.recall_from_matrix(entries, {2: 1.0}) == pytest.approx(0.5)


def test_recall_from_matrix_leaves_absent_classes_out():
    # No actual "misplaced" (class 1); predictions *as* class 1 still count as misses of class 0.
    entries = {(0, 0): 6.0, (0, 1): 4.0, (2, 2): 9.0, (2, 0): 1.0}
    assert metrics.recall_from_matrix(entries, {0: 1.0, 1: 1.0, 2: 2.0}) == pytest.approx((0.6 + 2 * 0.9) / 3)


def test_recall_from_matrix_nan_when_no_weighted_class_is_present():
    assert math.isnan(metrics.recall_from_matrix({(0, 0): 5.0}, {1: 1.0, 2: 2.0}))
    assert math.isnan(metrics.recall_from_matrix({}, {0: 1.0}))


def test_accuracy_from_matrix_is_the_diagonal_share():
    assert metrics.accuracy_from_matrix({(0, 0): 3, (1, 0): 1, (1, 1): 4, (2, 1): 2}) == pytest.approx(0.7)
    assert math.isnan(metrics.accuracy_from_matrix({}))


def test_model_default_metrics_are_left_out():
    assert build_eval_config({"ok": 1.0}, 0.5, {}, None).options.include_default_metrics.value is False


def test_argmax_recall_needs_weights():
    with pytest.raises(ValueError, match="recall_weights"):
        metrics.ArgmaxRecall(recall_weights={})


# --- The blessing flip (TFMA over a DataFrame of predictions) ---------------------

# Per class: (examples, predicted right). Argmax recall: ok 0.9, misplaced 0.85, damaged 0.6.
COUNTS = {"ok": (20, 18), "misplaced": (20, 17), "damaged": (20, 12)}


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    """Labels, probabilities and slice columns; the argmax is right at known rates but max prob is < 0.5."""
    rows = []
    for class_id, label in enumerate(LABELS):
        total, right = COUNTS[label]
        for i in range(total):
            predicted = class_id if i < right else (class_id + 1) % 3
            probs = [0.275, 0.275, 0.275]
            probs[predicted] = 0.45
            rows.append(
                {
                    "label": class_id,
                    "prediction": probs,
                    "lane_id": 1 + len(rows) % 4,
                    "device_id": f"tc52-{len(rows) % 3}",
                    "lighting": ("bright", "dim")[len(rows) % 2],
                }
            )
    return pd.DataFrame(rows)


def _expected_recalls(df: pd.DataFrame) -> dict[str, float]:
    labels = df["label"].to_numpy()
    predicted = np.argmax(np.stack(df["prediction"].to_numpy()), axis=1)
    per_class = {label: float(np.mean(predicted[labels == i] == i)) for i, label in enumerate(LABELS)}
    weights = np.array([CLASS_WEIGHTS[label] for label in LABELS])
    weighted = float(np.dot(weights, [per_class[label] for label in LABELS]) / weights.sum())
    return {WEIGHTED_RECALL: weighted, **{class_recall_name(k): v for k, v in per_class.items()}}


def _analyze(df: pd.DataFrame, out: str, weighted_floor: float, damaged_floor: float):
    # Without confidence intervals: values stay plain doubles here (tests/test_report.py reads the intervals).
    config = build_eval_config(
        CLASS_WEIGHTS,
        weighted_floor,
        {"damaged": damaged_floor},
        max_drop=None,
        slices=SLICES,
        confidence_intervals=False,
    )
    config.model_specs[0].prediction_key = "prediction"
    config.model_specs[0].signature_name = ""
    # TFMA's stock per-class Recall, for contrast: it thresholds each probability at 0.5.
    config.metrics_specs[0].metrics.append(
        tfma.MetricConfig(class_name="Recall", config='"class_id": 2, "name": "stock_recall_damaged"')
    )
    result = tfma.analyze_raw_data(df, config, output_path=out)
    overall = next(m for key, m in result.slicing_metrics if key == ())
    values = {name: v["doubleValue"] for name, v in overall[""][""].items() if "doubleValue" in v}
    values["stock_recall_damaged"] = overall[""]["classId:2"]["stock_recall_damaged"]["doubleValue"]
    return values, tfma.load_validation_result(out)


def _failed_metrics(validation) -> set[str]:
    return {f.metric_key.name for per_slice in validation.metric_validations_per_slice for f in per_slice.failures}


def test_fixture_defeats_tfma_stock_recall(predictions):
    assert np.max(np.stack(predictions["prediction"].to_numpy())) < 0.5
    expected = _expected_recalls(predictions)
    assert expected["recall/damaged"] == pytest.approx(0.6)
    assert expected[WEIGHTED_RECALL] == pytest.approx((0.9 + 0.85 + 2 * 0.6) / 4)


def test_reachable_floors_bless_and_values_are_argmax_recalls(predictions, tmp_path):
    values, validation = _analyze(predictions, str(tmp_path), weighted_floor=0.70, damaged_floor=0.55)
    for name, expected in _expected_recalls(predictions).items():
        assert values[name] == pytest.approx(expected, abs=1e-9), name
    assert values[EXAMPLE_COUNT] == len(predictions)
    assert values[ACCURACY] == pytest.approx((18 + 17 + 12) / 60)
    assert values["stock_recall_damaged"] == 0.0  # what the gate would see with TFMA's Recall
    # Slices miss classes (NaN recall there), yet validation passes: thresholds sit on the overall slice.
    assert validation.validation_ok, validation


def test_stricter_weighted_floor_does_not_bless_the_same_data(predictions, tmp_path):
    # 0.75 sits between the weighted (0.7375) and the unweighted (0.783) macro recall: damaged counts 2x.
    values, validation = _analyze(predictions, str(tmp_path), weighted_floor=0.75, damaged_floor=0.55)
    assert values[WEIGHTED_RECALL] == pytest.approx(0.7375)
    assert not validation.validation_ok
    assert _failed_metrics(validation) == {WEIGHTED_RECALL}


def test_too_strict_damaged_floor_alone_does_not_bless(predictions, tmp_path):
    _, validation = _analyze(predictions, str(tmp_path), weighted_floor=0.70, damaged_floor=0.65)
    assert not validation.validation_ok
    assert _failed_metrics(validation) == {"recall/damaged"}
