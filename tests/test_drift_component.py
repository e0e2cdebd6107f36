"""Component tier: the SpanDrift executor (TFDV statistics in Beam, image samples) over tiny synthetic spans.

Spans 1 and 2 hold the same mix; span 3 was taken mostly by one scanner, in
darker light. The executor runs as TFX runs it (the decorator's Beam
executor, a Beam pipeline from beam_pipeline_args) on hand-built input
artifacts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support.span_helpers import Mix, write_span

from components import drift
from components.drift_settings import DriftSettings
from shelf_data import drift_report
from shelf_data.window import SPLIT_PATTERN

pytestmark = pytest.mark.component

SHIFTED = Mix(devices=("zebra-tc52",) * 9 + ("honeywell-ct40",), brightness=70)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drift") / "photos"
    write_span(root, 1, Mix())
    write_span(root, 2, Mix())
    write_span(root, 3, SHIFTED)
    schema_dir = root.parent / "schema"  # a Schema artifact: one schema.pbtxt
    schema_dir.mkdir()
    (schema_dir / "schema.pbtxt").write_text(Path("schemas/schema.pbtxt").read_text())
    return root


def _settings(**changes) -> str:
    return dataclasses.replace(DriftSettings(), **changes).to_json()


def _run(data: Path, out: Path, newest: int, spans: str | None = None, **changes):
    """Run SpanDrift's executor; return the ``drift`` output artifact."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    examples.set_int_custom_property("span", newest)
    if spans:
        examples.set_string_custom_property("spans", spans)
    schema = standard_artifacts.Schema()
    schema.uri = str(data.parent / "schema")
    report = standard_artifacts.ExampleAnomalies()
    report.uri = str(out / "drift")
    executor = drift.SpanDrift.EXECUTOR_SPEC.executor_class(
        BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(out / "tmp"))
    )
    properties = {"input_base": str(data), "split_pattern": SPLIT_PATTERN, "settings": _settings(**changes)}
    executor.Do({"examples": [examples], "schema": [schema]}, {"drift": [report]}, properties)
    return report


def test_shifted_span_is_reported_against_the_one_before(data, tmp_path):
    artifact = _run(data, tmp_path, newest=3, spans="2,3")
    report = drift_report.read_report(artifact.uri)
    assert (report["current_span"], report["previous_span"]) == (3, 2)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"label", "device_id", "lighting", "image width", "image height", "image brightness"}
    assert checks["device_id"]["drifted"] and checks["device_id"]["value"] == pytest.approx(0.4)
    assert checks["device_id"]["measure"] == "infinity_norm" and checks["device_id"]["threshold"] == 0.1
    assert checks["image brightness"]["drifted"] and checks["image brightness"]["current"] < 80
    assert not checks["label"]["drifted"] and not checks["lighting"]["drifted"]
    assert not checks["image width"]["drifted"] and not checks["image height"]["drifted"]
    assert report["sample_images"] == {"2": 60, "3": 60}
    assert artifact.get_int_custom_property("drifted") == 1
    assert artifact.get_int_custom_property("previous_span") == 2
    # TFDV's statistics of both spans stay with the report.
    assert (Path(artifact.uri) / "span-2" / "FeatureStats.pb").exists()


def test_same_mix_does_not_drift_and_the_sample_is_bounded(data, tmp_path):
    artifact = _run(data, tmp_path, newest=2, image_sample=25)
    report = drift_report.read_report(artifact.uri)
    assert report["previous_span"] == 1 and report["drifted"] is False
    assert all(not c["drifted"] for c in report["checks"])
    assert report["sample_images"] == {"1": 25, "2": 25}
    assert artifact.get_int_custom_property("drifted") == 0


def test_stop_on_drift_fails_naming_feature_measure_and_threshold(data, tmp_path):
    with pytest.raises(drift.SpanDriftError) as failure:
        _run(data, tmp_path, newest=3, stop_on_drift=True)
    message = str(failure.value)
    assert "span 3 drifted from span 2 and drift.stop_on_drift is true" in message
    assert "device_id: infinity_norm 0.4000 > threshold 0.1000" in message
    assert "image brightness" in message and "label" not in message


def test_the_first_span_has_nothing_to_compare(data, tmp_path):
    artifact = _run(data, tmp_path, newest=1, stop_on_drift=True)
    report = drift_report.read_report(artifact.uri)
    assert report["previous_span"] is None and report["checks"] == []
    assert "no span before 1" in report["note"] and "spans present: 1-3" in report["note"]


def test_the_pusher_copies_the_report_into_the_manifest_block(data, tmp_path):
    from components.tflite_pusher import release

    artifact = _run(data, tmp_path, newest=3)
    block = release.drift_block([artifact])
    assert block == drift_report.read_report(artifact.uri) and block["drifted"] is True
    assert release.drift_block(None) is None
