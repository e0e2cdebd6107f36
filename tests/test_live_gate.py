"""Tests of components.tflite_pusher.live_gate: compare (pure), find_live_model (bucket.live), gate_variant (TFLite)."""

from __future__ import annotations

import datetime
import json
import math
import os
import re

import numpy as np
import pytest
from support import tflite_helpers as helpers

from bucket import layout, publish, storage, versions
from bucket.live import FIRST_RELEASE, LiveModel, LiveModelError, find_live_model
from components.tflite_pusher import live_gate as lg
from shelf_tflite import runtime

LABELS = ("ok", "misplaced", "damaged")
MODEL = "shelf_audit"
T0 = datetime.datetime(2026, 11, 25, 12, 1, 2, tzinfo=datetime.timezone.utc)

unit = pytest.mark.unit
component = pytest.mark.component


def _probs(predicted, classes: int = 3) -> np.ndarray:
    """Probabilities whose argmax is ``predicted`` (softmax-like rows)."""
    predicted = np.asarray(predicted)
    probs = np.full((len(predicted), classes), 0.1 / (classes - 1), dtype=np.float32)
    probs[np.arange(len(predicted)), predicted] = 0.9
    return probs


# -- compare: the pure core ---------------------------------------------------------------


@unit
def test_identical_predictions_pass_with_no_regressions():
    labels = np.arange(30) % 3
    predicted = labels.copy()
    predicted[[0, 3, 4]] = 2  # the live model is not perfect: the same mistakes do not count
    result = lg.compare(_probs(predicted), _probs(predicted), labels, LABELS, variant="fp16", live_version="v1")
    assert result.status == lg.COMPARED and result.compared and result.passed and result.reasons == ()
    assert result.regressions == 0 and result.improvements == 0 and result.regression_fraction == 0.0
    assert result.agreement == 1.0 and result.eval_count == 30
    assert result.recall_diff == {"ok": 0.0, "misplaced": 0.0, "damaged": 0.0}
    assert result.recall_live["ok"] == pytest.approx(0.8) and result.recall_live["misplaced"] == pytest.approx(0.9)
    assert result.support == {"ok": 10, "misplaced": 10, "damaged": 10}
    assert result.variant == "fp16" and result.live_version == "v1"
    assert "PASSED" in lg.summary(result) and "0 regressions" in lg.summary(result)


@unit
def test_candidate_that_loses_a_class_fails_naming_the_class_and_the_drop():
    labels = np.arange(30) % 3
    candidate = labels.copy()
    damaged = np.flatnonzero(labels == 2)[:3]
    candidate[damaged] = 1  # three damaged shelves called misplaced
    result = lg.compare(_probs(candidate), _probs(labels), labels, LABELS, lg.LiveGateConfig())
    assert not result.passed and result.status == lg.COMPARED
    assert result.recall_live["damaged"] == 1.0 and result.recall_candidate["damaged"] == pytest.approx(0.7)
    assert result.recall_diff["damaged"] == pytest.approx(-0.3) and result.recall_diff["ok"] == 0.0
    assert result.regressions == 3 and result.regressions_by_class == {"ok": 0, "misplaced": 0, "damaged": 3}
    recall_reason = [r for r in result.reasons if r.startswith("recall of")]
    assert len(recall_reason) == 1
    assert "'damaged'" in recall_reason[0] and "0.3000" in recall_reason[0]
    assert "1.0000 live -> 0.7000 candidate" in recall_reason[0] and "max_recall_drop 0.02" in recall_reason[0]
    regression_reason = [r for r in result.reasons if "regress" in r or "right with the live" in r]
    assert len(regression_reason) == 1 and "3 of 30" in regression_reason[0]
    assert "damaged 3" in regression_reason[0] and "max_regressions 0.01" in regression_reason[0]
    line = lg.summary(result)
    assert "FAILED" in line and "damaged -0.3000" in line and "\n" not in line


@unit
def test_recall_drop_exactly_at_the_threshold_passes():
    labels = np.zeros(50, dtype=np.int64)  # only "ok": 1 wrong photo of 50 is a drop of exactly 0.02
    config = lg.LiveGateConfig(max_recall_drop=0.02, max_regressions=1.0)
    one_wrong = labels.copy()
    one_wrong[7] = 1
    result = lg.compare(_probs(one_wrong), _probs(labels), labels, LABELS, config)
    assert result.recall_diff["ok"] == pytest.approx(-0.02) and result.passed
    two_wrong = one_wrong.copy()
    two_wrong[8] = 2
    result = lg.compare(_probs(two_wrong), _probs(labels), labels, LABELS, config)
    assert not result.passed and len(result.reasons) == 1 and "'ok' drops by 0.0400" in result.reasons[0]


@unit
def test_regression_fraction_exactly_at_the_threshold_passes():
    labels = np.arange(100) % 3
    live, candidate = labels.copy(), labels.copy()
    # Swap one mistake between two "ok" photos: recall unchanged, 1 regression, 1 improvement.
    live[3], candidate[0] = 1, 1
    config = lg.LiveGateConfig(max_recall_drop=0.02, max_regressions=0.01)
    result = lg.compare(_probs(candidate), _probs(live), labels, LABELS, config)
    assert result.regressions == 1 and result.improvements == 1 and result.regression_fraction == 0.01
    assert result.recall_diff["ok"] == 0.0 and result.passed
    # A second swap: 2 of 100 = 0.02 > 0.01, recall still unchanged.
    live[9], candidate[6] = 2, 2
    result = lg.compare(_probs(candidate), _probs(live), labels, LABELS, config)
    assert result.regressions == 2 and result.improvements == 2 and result.recall_diff["ok"] == 0.0
    assert not result.passed and len(result.reasons) == 1
    assert "2 of 100 eval photos (2.00%)" in result.reasons[0] and "max_regressions 0.01 (1.00%)" in result.reasons[0]
    assert result.agreement == pytest.approx(0.96)


@unit
def test_improvements_are_counted_and_do_not_fail():
    labels = np.arange(30) % 3
    live = labels.copy()
    live[labels == 2] = 1  # the live model misses every damaged shelf
    result = lg.compare(_probs(labels), _probs(live), labels, LABELS)
    assert result.passed and result.regressions == 0 and result.improvements == 10
    assert result.recall_diff["damaged"] == 1.0 and result.agreement == pytest.approx(20 / 30)
    assert "10 improvements" in lg.summary(result)


@unit
def test_class_absent_from_the_labels_has_no_recall_and_is_not_gated():
    labels = np.array([0, 2] * 10)  # no "misplaced" photo in the eval split
    live = labels.copy()
    result = lg.compare(_probs(live), _probs(live), labels, LABELS)
    assert result.recall_live["misplaced"] is None and result.recall_candidate["misplaced"] is None
    assert result.recall_diff["misplaced"] is None and result.support["misplaced"] == 0
    assert result.passed
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["recall"]["misplaced"] == {"live": None, "candidate": None, "diff": None}
    assert record["recall"]["ok"] == {"live": 1.0, "candidate": 1.0, "diff": 0.0}
    # No class at all with photos of its own other than "ok": the summary still renders.
    only_ok = np.zeros(5, dtype=np.int64)
    assert "PASSED" in lg.summary(lg.compare(_probs(only_ok), _probs(only_ok), only_ok, LABELS))


@unit
def test_to_dict_is_json_ready_for_the_manifest():
    labels = np.arange(9) % 3
    candidate = labels.copy()
    candidate[2] = 0
    result = lg.compare(
        _probs(candidate),
        _probs(labels),
        labels,
        LABELS,
        variant="int8",
        live_version="20261125T120102Z-abcdef",
        live_file="model_int8.tflite",
        live_variant="int8",
    )
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["status"] == "compared" and record["passed"] is False and record["variant"] == "int8"
    assert record["live"] == {
        "version": "20261125T120102Z-abcdef",
        "file": "model_int8.tflite",
        "variant": "int8",
        "sha256": None,
    }
    assert record["recall"]["damaged"] == {"live": 1.0, "candidate": 0.666667, "diff": -0.333333}
    assert record["regressions"] == 1 and record["regression_fraction"] == 0.111111
    assert record["thresholds"] == {"max_recall_drop": 0.02, "max_regressions": 0.01}
    assert record["reasons"] == list(result.reasons) and record["eval_count"] == 9


@unit
def test_non_finite_candidate_outputs_count_as_wrong():
    labels = np.arange(6) % 3
    candidate = _probs(labels).astype(np.float64)
    candidate[1] = np.nan  # argmax of a NaN row would be 0: never a right answer here
    candidate[3, 0] = np.inf
    result = lg.compare(candidate, _probs(labels), labels, LABELS, lg.LiveGateConfig(max_recall_drop=1.0))
    assert result.regressions == 2 and result.regressions_by_class == {"ok": 1, "misplaced": 1, "damaged": 0}


@unit
def test_empty_eval_split_is_not_comparable():
    empty = np.zeros((0, 3), dtype=np.float32)
    result = lg.compare(empty, empty, np.zeros(0, dtype=np.int64), LABELS, variant="fp16")
    assert result.status == lg.NOT_COMPARABLE and result.passed and "empty" in result.note
    assert result.variant == "fp16" and result.agreement is None and result.regression_fraction is None
    assert "skipped (not_comparable)" in lg.summary(result)


@unit
def test_disabled_config_computes_but_never_fails():
    labels = np.arange(30) % 3
    result = lg.compare(_probs(np.ones(30, dtype=np.int64)), _probs(labels), labels, LABELS, lg.LiveGateConfig(False))
    assert result.status == lg.DISABLED and result.passed and result.reasons == ()
    assert result.regressions == 20 and "disabled" in result.note
    assert "not applied (disabled)" in lg.summary(result)


@unit
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((_probs([0, 1]), _probs([0, 1, 2]), [0, 1]), "both be \\[N, classes\\]"),
        ((_probs([0, 1]), _probs([0, 1]), [0, 1, 2]), "labels_true has 3 entries for 2 rows"),
        ((_probs([0, 1], classes=4), _probs([0, 1], classes=4), [0, 1]), "4 classes, class_names has 3"),
        ((_probs([0, 1]), _probs([0, 1]), [0, 3]), "labels_true must be in 0..2"),
        ((_probs([0, 1]), _probs([0, 1]), [0.0, 1.0]), "integer class indices"),
    ],
)
def test_compare_rejects_inputs_that_do_not_fit(args, message):
    with pytest.raises(ValueError, match=message):
        lg.compare(*args, LABELS)


@unit
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_recall_drop": -0.01}, "max_recall_drop"),
        ({"max_recall_drop": 2}, "max_recall_drop"),
        ({"max_recall_drop": math.nan}, "max_recall_drop"),
        ({"max_recall_drop": "0.02"}, "max_recall_drop"),
        ({"max_recall_drop": True}, "max_recall_drop"),
        ({"max_regressions": 5.0}, "max_regressions"),  # a percentage by mistake
        ({"max_regressions": -1e-6}, "max_regressions"),
        ({"max_regressions": None}, "max_regressions"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must .*Received {field}="):
        lg.LiveGateConfig(**kwargs)


@unit
def test_config_defaults_and_limits():
    config = lg.LiveGateConfig()
    assert config.enabled and config.max_recall_drop == 0.02 and config.max_regressions == 0.01
    assert lg.LiveGateConfig(max_recall_drop=0, max_regressions=1).to_dict() == {
        "enabled": True,
        "max_recall_drop": 0,
        "max_regressions": 1,
    }


@unit
def test_only_a_compared_result_can_fail():
    result = lg.compare(_probs([0]), _probs([0]), [0], LABELS)
    with pytest.raises(ValueError, match="only a 'compared' result can fail"):
        lg.LiveComparison(**{**result.__dict__, "status": lg.NOT_COMPARABLE, "passed": False})
    with pytest.raises(ValueError, match="status must be one of"):
        lg.LiveComparison(**{**result.__dict__, "status": "skipped"})


# -- find_live_model: the bucket ----------------------------------------------------------


def _entry(name: str | None, data: bytes | None) -> dict:
    if name is None:
        return {"file": None, "published": False, "sha256": storage.sha256(data or b""), "reasons": ["latency"]}
    return {"file": name, "published": True, "sha256": storage.sha256(data), "bytes": len(data)}


def _publish(bucket: str, blobs: dict[str, bytes | None], default: str = "fp16", now=T0) -> str:
    """Publish a version with ``model_<variant>.tflite`` per published variant (None: rejected there)."""
    files = {layout.MODEL_FILE: blobs[default], layout.LABELS_FILE: b"ok\nmisplaced\ndamaged\n"}
    variants = {}
    for variant, data in blobs.items():
        published = data is not None and not data.startswith(b"rejected")
        name = f"model_{variant}.tflite" if published else None
        variants[variant] = _entry(name, data)
        if name:
            files[name] = data
    manifest = publish.build_manifest(
        model_name=MODEL,
        default_variant=default,
        variants=variants,
        labels=LABELS,
        gate_metrics={},
        lineage={"pipeline_run_id": "run-1"},
        image_shape=(128, 128, 1),
    )
    return publish.publish(bucket, MODEL, files, manifest, now=now).version


@component
def test_find_live_model_before_the_first_release(tmp_path):
    live, reason = find_live_model(str(tmp_path / "bucket"), MODEL, "fp16")
    assert live is None and reason.startswith(FIRST_RELEASE) and "LATEST" in reason


@component
def test_find_live_model_prefers_the_same_variant_file(tmp_path):
    bucket = str(tmp_path / "bucket")
    version = _publish(bucket, {"fp16": b"fp16-model-v1", "int8": b"int8-model-v1"})
    live, message = find_live_model(bucket, MODEL, "int8")
    assert live is not None and live.version == version == versions.read_latest(bucket, MODEL)
    assert live.file == "model_int8.tflite" and live.variant == "int8" and live.requested_variant == "int8"
    assert live.same_variant and live.checksum_verified and live.labels == LABELS
    assert live.data == b"int8-model-v1" and live.sha256 == storage.sha256(b"int8-model-v1")
    assert live.path == os.path.join(layout.version_dir(bucket, MODEL, version), "model_int8.tflite")
    assert "int8-model-v1" not in repr(live) and "data=" not in repr(live)
    assert version in message and "model_int8.tflite" in message and "same variant" in message


@component
def test_find_live_model_falls_back_to_the_default_model(tmp_path):
    bucket = str(tmp_path / "bucket")
    _publish(bucket, {"fp16": b"fp16-model-v1", "int8": b"rejected-int8"})
    live, message = find_live_model(bucket, MODEL, "int8")
    assert live is not None and live.file == layout.MODEL_FILE and live.data == b"fp16-model-v1"
    assert live.variant == "fp16" and live.requested_variant == "int8" and not live.same_variant
    assert live.checksum_verified and "did not publish int8" in message and layout.MODEL_FILE in message
    live, message = find_live_model(bucket, MODEL, "dynamic")
    assert live is not None and live.file == layout.MODEL_FILE and "has no dynamic variant" in message


@component
def test_find_live_model_follows_latest_after_a_rollback(tmp_path):
    bucket = str(tmp_path / "bucket")
    first = _publish(bucket, {"fp16": b"fp16-model-v1"})
    second = _publish(bucket, {"fp16": b"fp16-model-v2"}, now=T0 + datetime.timedelta(days=1))
    assert find_live_model(bucket, MODEL, "fp16")[0].version == second
    publish.rollback(bucket, MODEL, first, reason="field reports")
    live, _ = find_live_model(bucket, MODEL, "fp16")
    assert live.version == first and live.data == b"fp16-model-v1"


@component
def test_tampered_live_file_is_an_error_naming_the_path(tmp_path):
    bucket = str(tmp_path / "bucket")
    version = _publish(bucket, {"fp16": b"fp16-model-v1", "int8": b"int8-model-v1"})
    path = os.path.join(layout.version_dir(bucket, MODEL, version), "model_int8.tflite")
    with open(path, "wb") as handle:
        handle.write(b"int8-model-swapped")
    with pytest.raises(LiveModelError, match=re.escape(path)) as caught:
        find_live_model(bucket, MODEL, "int8")
    assert isinstance(caught.value, layout.BucketError)
    assert "sha256" in str(caught.value) and "bytes" in str(caught.value) and version in str(caught.value)
    # The other variant's file is intact: still found.
    assert find_live_model(bucket, MODEL, "fp16")[0].file == "model_fp16.tflite"


@component
def test_missing_live_file_recorded_in_the_manifest_is_an_error(tmp_path):
    bucket = str(tmp_path / "bucket")
    version = _publish(bucket, {"fp16": b"fp16-model-v1", "int8": b"int8-model-v1"})
    path = os.path.join(layout.version_dir(bucket, MODEL, version), "model_int8.tflite")
    os.remove(path)
    with pytest.raises(LiveModelError, match=re.escape(path) + " is missing"):
        find_live_model(bucket, MODEL, "int8")


@component
def test_unreadable_live_manifest_means_no_live_model(tmp_path):
    bucket = str(tmp_path / "bucket")
    version = _publish(bucket, {"fp16": b"fp16-model-v1"})
    with open(os.path.join(layout.version_dir(bucket, MODEL, version), layout.MANIFEST_FILE), "w") as handle:
        handle.write("{not json")
    live, reason = find_live_model(bucket, MODEL, "fp16")
    assert live is None and "no live model" in reason and version in reason and "not valid JSON" in reason


# -- gate_variant: real TFLite models ------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, bytes]:
    """The brightness classifier (right on every helper image) and one shifted to call everything misplaced."""
    return helpers.fp32_models(tmp_path_factory.mktemp("live_gate_models"), {"good": 0.0, "shifted": 8.0})


@pytest.fixture(scope="module")
def eval_split() -> tuple[np.ndarray, np.ndarray]:
    return helpers.make_images(30, seed=2)


def _live(data: bytes, version: str = "20261125T120102Z-abcdef", file: str = "model_fp32.tflite", **kw) -> LiveModel:
    fields = {
        "version": version,
        "file": file,
        "variant": "fp32",
        "requested_variant": "fp32",
        "data": data,
        "sha256": storage.sha256(data),
        "checksum_verified": True,
        "labels": LABELS,
        "path": f"/bucket/{MODEL}/versions/{version}/{file}",
    }
    fields.update(kw)
    return LiveModel(**fields)


@pytest.fixture
def run_calls(monkeypatch) -> list[bytes]:
    """Every model run_tflite is called with (the real function still runs)."""
    calls: list[bytes] = []
    real = runtime.run_tflite

    def counting(model_bytes, images, num_threads=1):
        calls.append(model_bytes)
        return real(model_bytes, images, num_threads)

    monkeypatch.setattr(runtime, "run_tflite", counting)
    return calls


@component
def test_gate_identical_models_pass(models, eval_split):
    images, labels = eval_split
    live = _live(models["good"])
    result = lg.gate_variant(models["good"], "fp32", live, images, labels, lg.LiveGateConfig(), LABELS)
    assert result.status == lg.COMPARED and result.passed and result.regressions == 0 and result.improvements == 0
    assert result.agreement == 1.0 and result.eval_count == 30
    assert result.recall_live == result.recall_candidate == {"ok": 1.0, "misplaced": 1.0, "damaged": 1.0}
    assert result.live_version == live.version and result.live_file == "model_fp32.tflite"
    assert result.variant == "fp32" and live.version in result.note


@component
def test_gate_candidate_that_flips_predictions_fails(models, eval_split):
    images, labels = eval_split
    result = lg.gate_variant(models["shifted"], "fp32", _live(models["good"]), images, labels, None, LABELS)
    assert result.status == lg.COMPARED and not result.passed
    assert result.recall_candidate == {"ok": 0.0, "misplaced": 1.0, "damaged": 0.0}
    assert result.regressions == 20 and result.regressions_by_class == {"ok": 10, "misplaced": 0, "damaged": 10}
    assert any("'ok' drops by 1.0000" in r for r in result.reasons)
    assert any("'damaged' drops by 1.0000" in r for r in result.reasons)
    assert any("20 of 30" in r for r in result.reasons)
    assert "FAILED" in lg.summary(result)


@component
def test_gate_candidate_that_fixes_the_live_model_passes_with_improvements(tmp_path, models, eval_split):
    images, labels = eval_split
    bucket = str(tmp_path / "bucket")
    version = _publish(bucket, {"fp32": models["shifted"]}, default="fp32")
    live, _ = find_live_model(bucket, MODEL, "fp32")
    result = lg.gate_variant(models["good"], "fp32", live, images, labels, lg.LiveGateConfig(), LABELS)
    assert result.passed and result.improvements == 20 and result.regressions == 0
    assert result.live_version == version and result.live_file == "model_fp32.tflite" and result.live_variant == "fp32"
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["recall"]["damaged"] == {"live": 0.0, "candidate": 1.0, "diff": 1.0}
    assert record["live"]["sha256"] == live.sha256 == storage.sha256(models["shifted"])


@component
def test_live_predictions_are_cached_per_live_file(models, eval_split, run_calls):
    images, labels = eval_split
    live = _live(models["good"], file=layout.MODEL_FILE, variant="fp16", requested_variant="fp16")
    cache: dict = {}
    first = lg.gate_variant(models["good"], "fp16", live, images, labels, None, LABELS, cache)
    second = lg.gate_variant(models["shifted"], "int8", live, images, labels, None, LABELS, cache)
    assert first.passed and not second.passed and second.regressions == 20
    assert run_calls.count(models["good"]) == 2  # live once (cached), candidate "fp16" once
    assert run_calls.count(models["shifted"]) == 1 and len(cache) == 1
    # Another live file (other bytes) is run, and without a cache the live model runs each time.
    other = _live(models["shifted"], version="20261126T000000Z-123456")
    lg.gate_variant(models["good"], "fp16", other, images, labels, None, LABELS, cache)
    assert run_calls.count(models["shifted"]) == 2 and len(cache) == 2
    run_calls.clear()
    lg.gate_variant(models["good"], "fp16", live, images, labels, None, LABELS)
    lg.gate_variant(models["good"], "int8", live, images, labels, None, LABELS)
    assert len(run_calls) == 4


@component
def test_candidate_probabilities_given_are_not_recomputed(models, eval_split, run_calls):
    images, labels = eval_split
    probs = _probs(np.ones(30, dtype=np.int64))  # as if the candidate called everything misplaced
    result = lg.gate_variant(
        models["good"], "fp32", _live(models["good"]), images, labels, None, LABELS, candidate_probs=probs
    )
    assert run_calls == [models["good"]] and result.regressions == 20  # only the live model ran


@component
def test_image_size_change_is_not_comparable_not_a_failure(models, eval_split, run_calls, monkeypatch):
    images, labels = eval_split
    live = _live(models["shifted"])
    real_shape = runtime.input_image_shape
    monkeypatch.setattr(runtime, "input_image_shape", lambda b: (96, 96, 1) if b == live.data else real_shape(b))
    result = lg.gate_variant(models["good"], "fp32", live, images, labels, lg.LiveGateConfig(), LABELS, {})
    assert result.status == lg.NOT_COMPARABLE and result.passed and result.reasons == ()
    assert "image size changed" in result.note and "96x96" in result.note and "128x128" in result.note
    assert result.live_version == live.version and run_calls == []
    assert "skipped (not_comparable)" in lg.summary(result)


@component
def test_channel_change_alone_is_still_compared(models, eval_split, monkeypatch):
    images, labels = eval_split
    live = _live(models["shifted"])
    # Real outputs first: the faked shape below would also resize the real interpreter's input (and crash it).
    outputs = {data: runtime.run_tflite(data, images) for data in (models["good"], models["shifted"])}
    real_shape = runtime.input_image_shape
    monkeypatch.setattr(runtime, "input_image_shape", lambda b: (128, 128, 3) if b == live.data else real_shape(b))
    monkeypatch.setattr(runtime, "run_tflite", lambda data, _images, num_threads=1: outputs[data])
    result = lg.gate_variant(models["good"], "fp32", live, images, labels, None, LABELS)
    assert result.status == lg.COMPARED and result.improvements == 20


@component
def test_live_model_with_other_labels_or_that_does_not_load_is_not_comparable(models, eval_split, run_calls):
    images, labels = eval_split
    reordered = _live(models["good"], labels=("ok", "damaged", "misplaced"))
    result = lg.gate_variant(models["good"], "fp32", reordered, images, labels, None, LABELS)
    assert result.status == lg.NOT_COMPARABLE and result.passed and "labels" in result.note
    broken = _live(b"this is not a flatbuffer")
    result = lg.gate_variant(models["good"], "fp32", broken, images, labels, None, LABELS)
    assert result.status == lg.NOT_COMPARABLE and result.passed and "does not load" in result.note
    assert run_calls == []


@component
def test_no_live_model_and_disabled_run_nothing(models, eval_split, run_calls):
    images, labels = eval_split
    reason = f"{FIRST_RELEASE} (no LATEST under /bucket/{MODEL})"
    result = lg.gate_variant(models["good"], "fp16", None, images, labels, None, LABELS, live_reason=reason)
    assert result.status == lg.NO_LIVE_MODEL and result.passed and result.note == reason
    assert result.live_version is None and result.recall_live == {"ok": None, "misplaced": None, "damaged": None}
    assert lg.summary(result) == f"live gate fp16: skipped (no_live_model): {reason}"
    off = lg.LiveGateConfig(enabled=False)
    result = lg.gate_variant(models["shifted"], "fp16", _live(models["good"]), images, labels, off, LABELS)
    assert result.status == lg.DISABLED and result.passed and "disabled" in result.note
    assert run_calls == []
    json.dumps(result.to_dict(), allow_nan=False)
