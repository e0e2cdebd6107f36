"""Tests of the HTML run report: the TFMA reader, the plots, the HTML and how a run's artifacts are found.

Synthetic TFMA protos are built by hand (with and without a baseline, with a
class never predicted, with confidence intervals); one test runs TFMA itself
with confidence intervals on.
"""

from __future__ import annotations

import base64
import math
import os
import re
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

from pipeline import report_inputs
from pipeline.run_summary import Stage
from report import build, plots, pusher
from report.tfma_reader import EvaluationView, load_evaluation
from shelf_data.contract import LABELS

pytestmark = pytest.mark.unit

CONTRACT_COLUMNS = ["feature", "value", "model", "count", "weighted_recall", "weighted_recall_lo", "weighted_recall_hi"]
for _label in LABELS:
    CONTRACT_COLUMNS += [f"recall/{_label}", f"recall/{_label}_lo", f"recall/{_label}_hi"]


# --- hand-built TFMA protos ----------------------------------------------------------


def _slice_key(proto, feature: str | None, value) -> None:
    if feature is None:
        return
    key = proto.slice_key.single_slice_keys.add(column=feature)
    if isinstance(value, int):
        key.int64_value = value
    else:
        key.bytes_value = str(value).encode()


def _metrics(feature, value, values: dict, model: str = "", ci: dict | None = None, diffs: dict | None = None):
    """One MetricsForSlice: ``values`` name -> value, ``ci`` name -> (lo, hi), ``diffs`` name -> diff."""
    proto = metrics_for_slice_pb2.MetricsForSlice()
    _slice_key(proto, feature, value)
    for name, number in values.items():
        kv = proto.metric_keys_and_values.add()
        kv.key.name = name
        kv.key.model_name = model
        kv.key.example_weighted.value = True
        kv.value.double_value.value = number
        if ci and name in ci:
            kv.confidence_interval.lower_bound.double_value.value = ci[name][0]
            kv.confidence_interval.upper_bound.double_value.value = ci[name][1]
    for name, number in (diffs or {}).items():
        kv = proto.metric_keys_and_values.add()
        kv.key.name = name
        kv.key.model_name = model
        kv.key.is_diff = True
        kv.key.example_weighted.value = True
        kv.value.double_value.value = number
    return proto


def _plot(feature, value, matrix: dict[tuple[int, int], float], model: str = ""):
    proto = metrics_for_slice_pb2.PlotsForSlice()
    _slice_key(proto, feature, value)
    kv = proto.plot_keys_and_values.add()
    kv.key.name = "multi_class_confusion_matrix_plot"
    kv.key.model_name = model
    m = kv.value.multi_class_confusion_matrix_at_thresholds.matrices.add(threshold=0.0)
    for (actual, predicted), count in matrix.items():
        m.entries.add(actual_class_id=actual, predicted_class_id=predicted, num_weighted_examples=count)
    return proto


# A model that predicts only "ok" (never misplaced, never damaged): 10 ok, 4 misplaced, 2 damaged.
ONLY_OK = {(0, 0): 10.0, (1, 0): 4.0, (2, 0): 2.0}
ONLY_OK_VALUES = {
    "example_count": 16.0,
    "weighted_macro_recall": 0.25,
    "recall/ok": 1.0,
    "recall/misplaced": 0.0,
    "recall/damaged": 0.0,
    "accuracy": 10 / 16,
}


def _no_baseline_view(with_ci: bool = True) -> EvaluationView:
    ci = {"weighted_macro_recall": (0.1, 0.4), "recall/ok": (0.9, 1.0)} if with_ci else None
    metrics = [
        _metrics(None, None, ONLY_OK_VALUES, ci=ci),
        _metrics("device_id", "tc52", {"example_count": 9.0, "weighted_macro_recall": 0.5, "recall/ok": 1.0}),
        _metrics("device_id", "mc33", {"example_count": 7.0, "weighted_macro_recall": 0.0, "recall/misplaced": 0.0}),
        _metrics("label", 2, {"example_count": 2.0, "weighted_macro_recall": 0.0, "recall/damaged": 0.0}),
    ]
    plots_ = [
        _plot(None, None, ONLY_OK),
        _plot("device_id", "tc52", {(0, 0): 8.0, (1, 0): 1.0}),
        _plot("device_id", "mc33", {(0, 0): 2.0, (1, 0): 3.0, (2, 0): 2.0}),
        _plot("label", 2, {(2, 0): 2.0}),
    ]
    return EvaluationView(metrics, plots_, uri="mem://no-baseline")


def _baseline_view() -> EvaluationView:
    metrics = [
        _metrics(
            None,
            None,
            ONLY_OK_VALUES,
            model="candidate",
            ci={"weighted_macro_recall": (0.2, 0.3)},
            diffs={"weighted_macro_recall": -0.05},
        ),
        _metrics(None, None, {**ONLY_OK_VALUES, "weighted_macro_recall": 0.30}, model="baseline"),
        _metrics("lighting", "dim", {"example_count": 60.0, "weighted_macro_recall": 0.2}, model="candidate"),
        _metrics("lighting", "dim", {"example_count": 60.0, "weighted_macro_recall": 0.4}, model="baseline"),
    ]
    plots_ = [
        _plot(None, None, ONLY_OK, model="candidate"),
        _plot(None, None, {(0, 0): 9.0, (0, 1): 1.0, (1, 1): 4.0, (2, 2): 2.0}, model="baseline"),
        _plot("lighting", "dim", {(0, 0): 50.0, (1, 0): 10.0}, model="candidate"),
        _plot("lighting", "dim", {(0, 0): 50.0, (1, 1): 10.0}, model="baseline"),
    ]
    validation = validation_result_pb2.ValidationResult(validation_ok=False)
    failure = validation.metric_validations_per_slice.add().failures.add()
    failure.metric_key.name = "weighted_macro_recall"
    failure.metric_key.is_diff = True
    failure.metric_value.double_value.value = -0.05
    failure.message = "change below -0.01"
    return EvaluationView(metrics, plots_, validation, uri="mem://baseline")


# --- the reader ------------------------------------------------------------------------


def test_no_baseline_view_names_the_single_model_candidate():
    view = _no_baseline_view()
    assert view.has_baseline is False
    assert view.labels == list(LABELS)
    assert view.slice_features() == ["device_id", "label"]
    table = view.slice_table()
    assert list(table.columns) == CONTRACT_COLUMNS
    assert set(table["model"]) == {"candidate"}
    overall = table[table["feature"] == "overall"].iloc[0]
    assert overall["count"] == 16
    assert overall["weighted_recall"] == 0.25
    assert (overall["weighted_recall_lo"], overall["weighted_recall_hi"]) == (0.1, 0.4)
    assert (overall["recall/ok_lo"], overall["recall/ok_hi"]) == (0.9, 1.0)
    assert math.isnan(overall["recall/damaged_lo"])  # no interval computed for that one


def test_never_predicted_classes_are_zero_columns_and_absent_classes_nan():
    view = _no_baseline_view()
    matrix = view.confusion_matrix()
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, [[10, 0, 0], [4, 0, 0], [2, 0, 0]])
    # Summed over every device: the same photos as the overall slice.
    np.testing.assert_array_equal(view.confusion_matrix("device_id"), matrix)
    np.testing.assert_array_equal(view.confusion_matrix("device_id", "mc33"), [[2, 0, 0], [3, 0, 0], [2, 0, 0]])
    tc52 = view.slice_table().set_index(["feature", "value"]).loc[("device_id", "tc52")]
    assert math.isnan(tc52["recall/damaged"]) and math.isnan(tc52["recall/misplaced"])


def test_label_slices_read_as_class_names_either_way():
    view = _no_baseline_view()
    assert ("label", "damaged") in view.slices()
    np.testing.assert_array_equal(view.confusion_matrix("label", "damaged"), view.confusion_matrix("label", 2))


def test_missing_slice_names_the_slice_and_the_evaluation():
    view = _no_baseline_view()
    with pytest.raises(LookupError, match=r"lighting=dim.*mem://no-baseline"):
        view.confusion_matrix("lighting", "dim")
    with pytest.raises(LookupError, match="model baseline"):
        view.confusion_matrix(model="baseline")


def test_baseline_view_keeps_both_models_and_the_diff():
    view = _baseline_view()
    assert view.has_baseline
    table = view.slice_table()
    assert sorted(table["model"].unique()) == ["baseline", "candidate"]
    assert len(table) == 4
    base = view.confusion_matrix(model="baseline")
    assert base[0, 1] == 1 and base[2, 2] == 2
    (gate,) = [r for r in view.gate_rows() if r.metric == "weighted_macro_recall"]
    assert gate.value == 0.25 and gate.baseline == 0.30
    assert gate.delta == pytest.approx(-0.05)  # TFMA's own diff
    assert gate.passed is False
    assert (gate.lo, gate.hi) == (0.2, 0.3)
    assert view.validation_ok is False and "vs baseline" in view.failures[0]


def test_unweighted_duplicates_do_not_override_weighted_values():
    proto = _metrics(None, None, {"accuracy": 0.5})
    kv = proto.metric_keys_and_values.add()
    kv.key.name = "accuracy"
    kv.value.double_value.value = 0.9  # the unweighted one, written after
    view = EvaluationView([proto])
    assert view.metric("accuracy").value == 0.5


# --- plots ------------------------------------------------------------------------------


def _png_of(uri: str) -> bytes:
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def test_plots_render_to_inline_png():
    view = _baseline_view()
    heat = plots.confusion_heatmap(view.confusion_matrix(), view.labels, "overall")
    assert len(_png_of(plots.to_data_uri(heat))) > 2000
    fig = plots.slice_recall_plot(view.slice_table(), "lighting")
    assert fig.axes[0].get_title() == "weighted recall by lighting"
    assert len(_png_of(plots.to_data_uri(fig))) > 2000


def test_slice_plot_with_many_values_draws_the_worst_and_says_so():
    rows = [
        {
            "feature": "lane_id",
            "value": str(i),
            "model": "candidate",
            "count": 30.0,
            "weighted_recall": i / 40,
            "weighted_recall_lo": math.nan,
            "weighted_recall_hi": math.nan,
        }
        for i in range(40)
    ]
    fig = plots.slice_recall_plot(pd.DataFrame(rows), "lane_id", max_values=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert [label.split(" ")[0] for label in labels] == ["0", "1", "2", "3", "4"]
    assert "5 lowest of 40" in fig.axes[0].get_title()


# --- the HTML ---------------------------------------------------------------------------


def _write_evaluation(folder, metrics, plots_, validation=None) -> str:
    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, "metrics-00000-of-00001.tfrecord")) as w:
        for m in metrics:
            w.write(m.SerializeToString())
    with tf.io.TFRecordWriter(os.path.join(folder, "plots-00000-of-00001.tfrecord")) as w:
        for p in plots_:
            w.write(p.SerializeToString())
    if validation is not None:
        with tf.io.TFRecordWriter(os.path.join(folder, "validations.tfrecord")) as w:
            w.write(validation.SerializeToString())
    return str(folder)


def _assert_self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text), "a network reference"
    assert "<script" not in text
    images = re.findall(r"<img[^>]*>", text)
    assert images
    for tag in images:
        assert re.search(r'src="data:image/(png|jpeg);base64,', tag), tag


def test_html_is_self_contained_with_baseline_and_not_published(tmp_path):
    view = _baseline_view()
    uri = _write_evaluation(tmp_path / "eval", *_protos_of_baseline())
    text = build.build_html(build.ReportInputs(evaluation_uri=uri, push_note="model not blessed", run_id="r1"))
    _assert_self_contained(text)
    assert view.has_baseline
    assert "NOT blessed" in text
    assert "Not published: model not blessed" in text
    assert "Candidate vs baseline per slice" in text and "-0.2000" in text  # lighting=dim 0.2 vs 0.4
    assert "confusion matrix overall baseline" in text  # the baseline's confusion matrix (alt text)
    # No examples, no model: those sections say so instead of failing.
    assert "No gallery" in text and "examples are unknown" in text


def _variant(
    passed: bool, *, size: int, latency_ms: float, agreement: float, recall_ok: float, reasons: list[str]
) -> dict:
    """A manifest's variant report on 70 eval photos (published if it passed); the SavedModel's recall of ok is 1."""
    return {
        "agreement": agreement,
        "eval_count": 70,
        "passed": passed,
        "published": passed,
        "bytes": size,
        "latency_ms": latency_ms,
        "recall": {"ok": recall_ok},
        "savedmodel_recall": {"ok": 1.0},
        "reasons": reasons,
    }


def test_html_marks_small_slices_and_shows_variants(tmp_path):
    uri = _write_evaluation(tmp_path / "eval", *_protos_of_no_baseline())
    manifest = {
        "version": "20261125T000000Z-abc",
        "model_name": "shelf_audit",
        "default_variant": "fp16",
        "labels": list(LABELS),
        "variants": {
            "fp16": _variant(True, size=1900000, latency_ms=0.5, agreement=1.0, recall_ok=1.0, reasons=[]),
            "int8": _variant(
                False, size=1200000, latency_ms=1.1, agreement=0.9, recall_ok=0.8, reasons=["damaged recall dropped"]
            ),
        },
    }
    text = build.build_html(build.ReportInputs(evaluation_uri=uri, manifest=manifest, small_slice=8))
    _assert_self_contained(text)
    assert "7 <b>small</b>" in text  # device mc33, 7 photos < 8
    assert "9 <b>small</b>" not in text
    assert "7 of 70" in text  # int8 flips: (1 - 0.9) * 70
    assert "damaged recall dropped" in text
    assert "No baseline" in text
    assert "No comparison with a live model is recorded" in text


def test_html_shows_each_variant_against_the_live_model(tmp_path):
    uri = _write_evaluation(tmp_path / "eval", *_protos_of_no_baseline())
    recall = {"ok": {"live": 1.0, "candidate": 0.9, "diff": -0.1}}
    manifest = {
        "version": "v2",
        "labels": list(LABELS),
        "default_variant": "fp16",
        "variants": {},
        "live_gate": {
            "enabled": True,
            "max_recall_drop": 0.02,
            "max_regressions": 0.01,
            "variants": {
                "fp16": {
                    "status": "compared",
                    "passed": False,
                    "live": {"version": "v1", "file": "model_fp16.tflite"},
                    "recall": recall,
                    "regressions": 7,
                    "eval_count": 70,
                    "regression_fraction": 0.1,
                    "improvements": 2,
                    "reasons": ["recall of 'ok' drops by 0.1000"],
                },
                "tasks": {"status": "no_live_model", "passed": True, "note": "no live model: first release"},
            },
        },
    }
    text = build.build_html(build.ReportInputs(evaluation_uri=uri, manifest=manifest))
    _assert_self_contained(text)
    assert "Variants vs the live model" in text and "<code>v1/model_fp16.tflite</code>" in text
    assert "7 of 70 (0.100)" in text and "recall of &#x27;ok&#x27; drops by 0.1000" in text
    assert "ok: 0.9000" in text and "live 1.0000" in text and "diff -0.1000" in text
    assert "no_live_model" in text and "no live model: first release" in text
    # A first release compares nothing: the section says so instead of describing a comparison.
    manifest["live_gate"]["variants"] = {"tasks": manifest["live_gate"]["variants"]["tasks"]}
    first = build.build_html(build.ReportInputs(evaluation_uri=uri, manifest=manifest))
    assert "No variant was compared with a live model" in first and "no live model: first release" in first
    assert "next to the model that was live" not in first


def _protos_of_baseline():
    view_metrics = [
        _metrics(None, None, ONLY_OK_VALUES, model="candidate", diffs={"weighted_macro_recall": -0.05}),
        _metrics(None, None, {**ONLY_OK_VALUES, "weighted_macro_recall": 0.30}, model="baseline"),
        _metrics("lighting", "dim", {"example_count": 60.0, "weighted_macro_recall": 0.2}, model="candidate"),
        _metrics("lighting", "dim", {"example_count": 60.0, "weighted_macro_recall": 0.4}, model="baseline"),
    ]
    view_plots = [
        _plot(None, None, ONLY_OK, model="candidate"),
        _plot(None, None, {(0, 0): 10.0, (1, 1): 4.0, (2, 2): 2.0}, model="baseline"),
        _plot("lighting", "dim", {(0, 0): 50.0, (1, 0): 10.0}, model="candidate"),
    ]
    validation = validation_result_pb2.ValidationResult(validation_ok=False)
    return view_metrics, view_plots, validation


def _protos_of_no_baseline():
    view = [
        _metrics(None, None, ONLY_OK_VALUES, ci={"weighted_macro_recall": (0.1, 0.4)}),
        _metrics("device_id", "tc52", {"example_count": 9.0, "weighted_macro_recall": 0.5}),
        _metrics("device_id", "mc33", {"example_count": 7.0, "weighted_macro_recall": 0.0}),
    ]
    return view, [_plot(None, None, ONLY_OK)], validation_result_pb2.ValidationResult(validation_ok=True)


def test_missing_evaluation_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_evaluation(str(tmp_path))


def test_compare_side_by_side_and_manifest_fallback(tmp_path):
    a = build.CompareSide("run A", view=_no_baseline_view())
    b = build.CompareSide("run B", view=_baseline_view())
    text = build.build_compare_html(a, b)
    _assert_self_contained(text)
    assert "weighted recall run A" in text and "weighted recall run B" in text
    only = build.build_compare_html(
        a,
        build.CompareSide(
            "version v1", gate_metrics={"overall": {"weighted_macro_recall": 0.5}}, note="evaluation gone"
        ),
    )
    assert "evaluation gone" in only and "+0.2500" in only  # 0.5 - 0.25


# --- finding a run's artifacts ---------------------------------------------------------


def _artifact(uri: str, **custom) -> metadata_store_pb2.Artifact:
    artifact = metadata_store_pb2.Artifact(uri=uri)
    for key, value in custom.items():
        if isinstance(value, int):
            artifact.custom_properties[key].int_value = value
        else:
            artifact.custom_properties[key].string_value = value
    return artifact


def test_inputs_from_stages_maps_outputs_and_the_push_reason():
    stages = [
        Stage("ImportExampleGen", "CACHED", 0, {"examples": [_artifact("/h/ex/1", span=1)]}),
        Stage("StatisticsGen", "COMPLETE", 0, {"statistics": [_artifact("/h/stats/5")]}),
        Stage("ExampleValidator", "COMPLETE", 0, {"anomalies": [_artifact("/h/anom/6")]}),
        Stage("SpanDrift", "COMPLETE", 0, {"drift": [_artifact("/h/drift/4")]}),
        Stage("Trainer", "COMPLETE", 0, {"model": [_artifact("/h/model/9")], "model_run": [_artifact("/h/run/9")]}),
        Stage("Evaluator", "COMPLETE", 0, {"evaluation": [_artifact("/h/ev/10")], "blessing": [_artifact("/h/b/10")]}),
        Stage("TFLitePusher", "COMPLETE", 0, {"pushed_model": [_artifact("/h/p", pushed=0, pushed_reason="no")]}),
    ]
    inputs = report_inputs.inputs_from_stages(stages, "run-1", "demo")
    assert (inputs.evaluation_uri, inputs.blessing_uri, inputs.model_uri) == ("/h/ev/10", "/h/b/10", "/h/model/9")
    assert (inputs.examples_uri, inputs.statistics_uri, inputs.anomalies_uri) == ("/h/ex/1", "/h/stats/5", "/h/anom/6")
    assert inputs.drift_uri == "/h/drift/4" and inputs.spans == [1]
    assert inputs.manifest is None and inputs.push_note == "no"
    with pytest.raises(report_inputs.RunNotFound, match="run-1 of demo has no Evaluator output.*Trainer COMPLETE"):
        report_inputs.inputs_from_stages(stages[:5], "run-1", "demo")


def _pusher_run(tmp_path, run_id: str, pushed: int, page: str) -> types.SimpleNamespace:
    """A run summary whose only stage is a pusher that kept ``page`` as its report.html copy."""
    folder = tmp_path / "pushed"
    folder.mkdir()
    (folder / "report.html").write_text(page)
    stages = [Stage("TFLitePusher", "COMPLETE", 0, {"pushed_model": [_artifact(str(folder), pushed=pushed)]})]
    return types.SimpleNamespace(stages=stages, run_id=run_id)


def test_run_report_copies_the_page_the_pusher_published(tmp_path):
    summary = _pusher_run(tmp_path, "run-7", pushed=1, page="<html>published page</html>")
    path = report_inputs.write_run_report(summary, str(tmp_path / "home"), "demo")
    assert path == report_inputs.report_path(str(tmp_path / "home"), "run-7")
    assert Path(path).read_text() == "<html>published page</html>"


def test_run_report_is_built_when_nothing_was_published(tmp_path):
    summary = _pusher_run(tmp_path, "run-8", pushed=0, page="a page from a version that was not published")
    # Not published: the page is built from the run's artifacts (here there is no evaluation, so it fails).
    with pytest.raises(report_inputs.RunNotFound, match="no Evaluator output"):
        report_inputs.write_run_report(summary, str(tmp_path / "home"), "demo")


def test_pusher_report_lists_the_validator_anomalies(tmp_path):
    class _A:
        def __init__(self, uri):
            self.uri = uri

    evaluation = _write_evaluation(tmp_path / "eval", *_protos_of_no_baseline())
    seen = {}

    def build(inputs):
        seen["i"] = inputs
        return "<html></html>"

    with mock.patch.object(pusher, "build_html", side_effect=build):
        pusher.report_files(
            {"model_evaluation": [_A(evaluation)], "anomalies": [_A("/h/anomalies/6")]},
            {"variants": {}, "lineage": {"pipeline_run_id": "r"}},
        )
    assert seen["i"].anomalies_uri == "/h/anomalies/6"


def test_report_path_is_under_the_home(tmp_path):
    assert report_inputs.report_path(str(tmp_path), "2026-11-25T10:00:00.1") == os.path.join(
        str(tmp_path), "reports", "2026-11-25T10:00:00.1", "report.html"
    )


def test_pusher_report_is_bytes_or_nothing(tmp_path, caplog):
    class _A:
        def __init__(self, uri):
            self.uri = uri

    uri = _write_evaluation(tmp_path / "eval", *_protos_of_no_baseline())
    files = pusher.report_files({"model_evaluation": [_A(uri)]}, {"variants": {}, "lineage": {"pipeline_run_id": "r"}})
    assert list(files) == ["report.html"] and files["report.html"].startswith(b"<!DOCTYPE html>")
    broken = pusher.report_files({"model_evaluation": [_A(str(tmp_path / "missing"))]}, {})
    assert broken == {}
    assert "publishing WITHOUT report.html" in caplog.text


# --- TFMA itself, with confidence intervals ----------------------------------------------


def test_tfma_confidence_intervals_are_read(tmp_path):
    # TFMA itself on in-memory predictions, as tests/test_eval_config.py does (seconds).
    from pipeline.eval_config import build_eval_config

    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        label = int(rng.integers(0, 3))
        predicted = label if rng.random() < 0.8 else int(rng.integers(0, 2))
        probs = [0.2, 0.2, 0.2]
        probs[predicted] = 0.6
        rows.append({"label": label, "prediction": probs, "lighting": "dim" if i % 4 == 0 else "bright"})
    config = build_eval_config({"ok": 1.0, "misplaced": 1.0, "damaged": 2.0}, 0.0, {}, None, slices=["lighting"])
    config.model_specs[0].prediction_key = "prediction"
    config.model_specs[0].signature_name = ""
    assert config.options.compute_confidence_intervals.value
    tfma.analyze_raw_data(pd.DataFrame(rows), config, output_path=str(tmp_path))
    view = load_evaluation(str(tmp_path))
    table = view.slice_table()
    overall = table[table["feature"] == "overall"].iloc[0]
    assert overall["count"] == 240
    assert overall["weighted_recall_lo"] < overall["weighted_recall"] < overall["weighted_recall_hi"]
    dim = table[(table["feature"] == "lighting") & (table["value"] == "dim")].iloc[0]
    assert (
        dim["weighted_recall_hi"] - dim["weighted_recall_lo"]
        > overall["weighted_recall_hi"] - overall["weighted_recall_lo"]
    )  # a quarter of the photos: an interval about twice as wide (half the photos was too close to call)
    assert view.confusion_matrix().sum() == 240
    assert view.validation_ok is True


# --- the photos: counts and the misclassified gallery -------------------------------------


def _tiny_examples(folder, png: bytes) -> str:
    """An ExampleGen-like folder: Split-eval with 12 photos (label i % 3, lane i, device d0/d1) and Split-train."""
    from shelf_data.contract import PhotoRecord, make_example

    for split, count in (("eval", 12), ("train", 5)):
        os.makedirs(folder / f"Split-{split}")
        path = str(folder / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for i in range(count):
                record = PhotoRecord(png, label=i % 3, lane_id=i + 1, device_id=f"d{i % 2}", lighting="dim")
                w.write(make_example(record).SerializeToString())
    return str(folder)


def _lane_model(folder) -> str:
    """A SavedModel whose serving_default predicts class ``lane_id % 3`` from serialized examples."""

    class LaneModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            lane = tf.io.parse_example(examples, {"lane_id": tf.io.FixedLenFeature([], tf.int64)})["lane_id"]
            return {"probabilities": tf.one_hot(lane % 3, 3, on_value=0.8, off_value=0.1)}

    module = LaneModel()
    path = str(folder / "Format-Serving")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return str(folder)


def test_gallery_shows_mistakes_from_the_preferred_slices_first(tmp_path, make_image):
    from report import examples

    examples_uri = _tiny_examples(tmp_path / "examples", make_image("RGB", (96, 80), fmt="PNG"))
    model_uri = _lane_model(tmp_path / "model")
    # lane i + 1 predicts (i + 1) % 3, label is i % 3: every photo is wrong.
    photos, wrong, read = examples.misclassified(model_uri, examples_uri, limit=4, prefer=[("device_id", "d1")])
    assert (wrong, read, len(photos)) == (12, 12, 4)
    assert {p.device_id for p in photos} == {"d1"}
    first = photos[0]
    assert first.thumbnail[:2] == b"\xff\xd8"  # JPEG
    assert first.true_label in LABELS and first.predicted in LABELS and first.predicted != first.true_label
    assert first.probability == pytest.approx(0.8) and first.true_probability == pytest.approx(0.1)
    assert first.lighting == "dim" and first.record.startswith("data_tfrecord-00000-of-00001.gz#")
    # The pusher passes the SavedModel it has loaded: the same gallery, without loading it from the folder.
    loaded = tf.saved_model.load(os.path.join(model_uri, "Format-Serving"))
    again = examples.misclassified(
        str(tmp_path / "no-model"), examples_uri, limit=4, prefer=[("device_id", "d1")], loaded=loaded
    )
    assert (again[1], again[2]) == (wrong, read) and [p.record for p in again[0]] == [p.record for p in photos]
    counts = examples.count_examples(examples_uri)
    assert counts["total"] == 17
    assert counts["splits"]["eval"] == {"ok": 4, "misplaced": 4, "damaged": 4}
    assert sum(sum(v.values()) for v in counts["device_id"].values()) == 17


def test_counts_by_split_class_device_lighting_and_lane_including_missing_values(tmp_path, make_image):
    from report import examples
    from shelf_data.contract import PhotoRecord, make_example

    folder = tmp_path / "examples"
    photo = make_image("RGB", (96, 80), fmt="PNG")
    rows = {"eval": [(0, 1, "d0", "dim"), (2, 1, "d1", None), (2, 7, "d1", "bright")], "train": [(1, 2, "d0", None)]}
    for split, records in rows.items():
        os.makedirs(folder / f"Split-{split}")
        path = str(folder / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for label, lane, device, lighting in records:
                record = PhotoRecord(photo, label=label, lane_id=lane, device_id=device, lighting=lighting)
                w.write(make_example(record).SerializeToString())
    counts = examples.count_examples(str(folder))
    assert counts["total"] == 4
    assert counts["splits"] == {"eval": {"ok": 1, "damaged": 2}, "train": {"misplaced": 1}}
    assert counts["device_id"] == {"d0": {"ok": 1, "misplaced": 1}, "d1": {"damaged": 2}}
    assert counts["lighting"] == {
        "(missing)": {"damaged": 1, "misplaced": 1},
        "bright": {"damaged": 1},
        "dim": {"ok": 1},
    }
    assert counts["lane_id"] == {"1": {"ok": 1, "damaged": 1}, "2": {"misplaced": 1}, "7": {"damaged": 1}}


def test_report_with_gallery_and_counts_is_self_contained(tmp_path, make_image):
    examples_uri = _tiny_examples(tmp_path / "examples", make_image("RGB", (96, 80), fmt="JPEG"))
    model_uri = _lane_model(tmp_path / "model")
    uri = _write_evaluation(tmp_path / "eval", *_protos_of_no_baseline())
    inputs = build.ReportInputs(evaluation_uri=uri, model_uri=model_uri, examples_uri=examples_uri, gallery_count=5)
    text = build.build_html(inputs)
    _assert_self_contained(text)
    assert "12 of 12 eval photos misclassified" in text and "showing 5" in text
    assert len(re.findall(r'<img src="data:image/jpeg', text)) == 5
    assert "17 photos" in text
    assert "No data-quality step ran" in text  # no bad_records.json in these examples
