"""Unit tests of components.drift and shelf_data.drift_report: the comparisons on hand-built statistics and images,
the report and its summary."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from support.span_helpers import Mix, gray_jpeg, write_span
from tensorflow_metadata.proto.v0 import schema_pb2

from components import drift
from components.drift_settings import DriftSettings as Settings
from shelf_data import drift_report
from shelf_data.drift_report import Check, DriftReport

pytestmark = pytest.mark.unit

SCHEMA = "schemas/schema.pbtxt"


@pytest.fixture(scope="module")
def schema():
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(SCHEMA)


def _statistics(features: dict[str, dict]):
    """Hand-built statistics of one span: value -> count, per categorical feature (as TFDV writes them)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    kinds = statistics_pb2.FeatureNameStatistics
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    total = sum(next(iter(features.values())).values())
    dataset = statistics.datasets.add(num_examples=total)
    for name, counts in features.items():
        feature = dataset.features.add(type=kinds.INT if name in ("label", "lane_id") else kinds.STRING)
        feature.path.step.append(name)
        feature.string_stats.common_stats.num_non_missing = total
        feature.string_stats.unique = len(counts)
        for rank, (value, count) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
            feature.string_stats.rank_histogram.buckets.add(
                low_rank=rank, high_rank=rank, label=str(value), sample_count=count
            )
    return statistics


BEFORE = {
    "device_id": {"zebra-tc52": 50, "ct40": 50},
    "label": {0: 65, 1: 25, 2: 10},
    "lighting": {"dim": 20, "normal": 80},
}


def test_drift_schema_keeps_only_the_compared_features_with_their_comparators(schema):
    settings = Settings(infinity_norm={"device_id": 0.1, "lane_id": 0.2}, jensen_shannon_divergence={"device_id": 0.3})
    copy = drift.drift_schema(schema, settings)
    assert [f.name for f in copy.feature] == ["device_id", "lane_id"]
    device, lane = copy.feature
    assert device.drift_comparator.infinity_norm.threshold == pytest.approx(0.1)
    assert device.drift_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.3)
    assert lane.drift_comparator.infinity_norm.threshold == pytest.approx(0.2)
    assert lane.int_domain.is_categorical  # counted by value, so that shares can be compared
    assert not [f for f in schema.feature if f.HasField("drift_comparator")]  # the curated schema is untouched


def test_drift_schema_names_a_feature_the_schema_lacks(schema):
    without = schema_pb2.Schema()
    without.CopyFrom(schema)
    kept = [f for f in without.feature if f.name != "lighting"]
    del without.feature[:]
    without.feature.extend(kept)
    with pytest.raises(ValueError, match=r"drift compares \['lighting'\], which the schema does not have"):
        drift.drift_schema(without, Settings(infinity_norm={"lighting": 0.1}))


def test_settings_name_a_feature_no_photo_carries():
    with pytest.raises(ValueError, match=r"drift.infinity_norm names unknown feature 'aisle'"):
        Settings(infinity_norm={"aisle": 0.1})


def test_a_shifted_device_mix_is_flagged_and_a_stable_label_mix_is_not(schema):
    settings = Settings(infinity_norm={"device_id": 0.1, "label": 0.1}, jensen_shannon_divergence={"lighting": 0.05})
    after = {
        "device_id": {"zebra-tc52": 90, "ct40": 10},
        "label": {0: 64, 1: 26, 2: 10},
        "lighting": {"dim": 50, "normal": 50},
    }
    checks = {
        (c.name, c.measure): c
        for c in drift.compare_statistics(_statistics(BEFORE), _statistics(after), drift.drift_schema(schema, settings))
    }
    assert set(checks) == {
        ("device_id", "infinity_norm"),
        ("label", "infinity_norm"),
        ("lighting", "jensen_shannon_divergence"),
    }
    device = checks["device_id", "infinity_norm"]
    assert device.value == pytest.approx(0.4) and device.threshold == pytest.approx(0.1) and device.drifted
    assert "largest change" in device.detail
    label = checks["label", "infinity_norm"]
    assert label.value == pytest.approx(0.01) and not label.drifted
    assert checks["lighting", "jensen_shannon_divergence"].drifted


def test_identical_spans_do_not_drift(schema):
    settings = Settings(infinity_norm={"device_id": 0.1, "label": 0.1, "lighting": 0.1})
    checks = drift.compare_statistics(_statistics(BEFORE), _statistics(BEFORE), drift.drift_schema(schema, settings))
    assert len(checks) == 3 and all(c.value == 0 and not c.drifted for c in checks)


def test_image_measures_decode_like_transform_and_skip_what_does_not_decode():
    measures = drift.image_measures([gray_jpeg(40, (80, 64)), b"\xff\xd8 broken", gray_jpeg(200, (100, 70))])
    assert list(measures["width"]) == [80, 100] and list(measures["height"]) == [64, 70]
    assert measures["brightness"][0] == pytest.approx(40, abs=3) and measures["brightness"][1] == pytest.approx(
        200, abs=3
    )


def test_image_comparison_reports_the_worst_statistic_per_measure():
    before = drift.summarize_images({"width": np.array([100.0] * 10), "brightness": np.linspace(100, 140, 11)})
    assert before["brightness"]["p50"] == pytest.approx(120) and before["brightness"]["mean"] == pytest.approx(120)
    after = drift.summarize_images({"width": np.array([104.0] * 10), "brightness": np.linspace(60, 140, 11)})
    checks = {c.name: c for c in drift.compare_images(before, after, threshold=0.15)}
    assert set(checks) == {"image width", "image brightness"}  # height: no data on either side, no check
    assert checks["image width"].value == pytest.approx(0.04) and not checks["image width"].drifted
    brightness = checks["image brightness"]
    # p10 moves most: 104 -> 68, a relative change of 36/104.
    assert brightness.measure == "p10 relative change" and brightness.value == pytest.approx(36 / 104)
    assert (brightness.previous, brightness.current) == (pytest.approx(104), pytest.approx(68))
    assert brightness.drifted


def test_relative_change_has_a_floor_of_one_for_near_black_spans():
    near_black = {"brightness": {s: 0.01 for s in drift.IMAGE_STATISTICS}}
    dark = {"brightness": {s: 0.5 for s in drift.IMAGE_STATISTICS}}
    [check] = drift.compare_images(near_black, dark, threshold=0.6)
    assert check.value == pytest.approx(0.49) and not check.drifted


def test_sample_images_takes_records_from_every_file_up_to_the_limit(tmp_path):
    write_span(tmp_path, 1, Mix(count=10, brightness=50), shards=2)
    pattern = str(tmp_path / "span-1" / "*.tfrecord.gz")
    first = drift.sample_images(pattern, 4)
    assert len(first) == 4 and len(drift.sample_images(pattern, 500)) == 10
    # Records alternate between the two shards, so the first four come from both (seeds 1000..1003).
    assert first == [gray_jpeg(50, seed=1000 + i) for i in (0, 1, 2, 3)]


def test_previous_span_is_the_newest_before_the_current_one():
    assert drift.previous_span([1, 2, 5, 7], 7) == 5
    assert drift.previous_span([1, 2, 5, 7], 5) == 2
    assert drift.previous_span([3], 3) is None


def _report(stop: bool = False) -> DriftReport:
    return DriftReport(
        current_span=7,
        previous_span=6,
        checks=(
            Check("device_id", "infinity_norm", 0.23, 0.1, detail="largest change: 'zebra-tc52'"),
            Check("label", "infinity_norm", 0.02, 0.1),
            Check("image brightness", "p50 relative change", 0.21, 0.15, previous=118.2, current=93.4),
        ),
        sample_images={"6": 500, "7": 500},
        stop_on_drift=stop,
    )


def test_report_names_every_drifted_check_with_measure_and_threshold():
    report = _report(stop=True)
    assert [c.name for c in report.drifted] == ["device_id", "image brightness"]
    message = report.error_message()
    assert "span 7 drifted from span 6 and drift.stop_on_drift is true" in message
    assert "device_id: infinity_norm 0.2300 > threshold 0.1000 (largest change: 'zebra-tc52')" in message
    assert "image brightness: p50 relative change 0.2100 > threshold 0.1500 (118.2 -> 93.4)" in message
    assert "label" not in message
    assert report.headline() == (
        "drift: span 7 vs span 6: 2 of 3 checks above threshold (run stopped: drift.stop_on_drift = true)"
    )
    assert _report().headline().endswith("2 of 3 checks above threshold (reported only)")


def test_report_round_trips_through_its_json(tmp_path):
    report = _report()
    drift_report.write_report(report, str(tmp_path / "out"))
    raw = drift_report.read_report(str(tmp_path / "out"))
    assert raw["drifted"] is True and raw["checks"][0]["drifted"] is True and raw["checks"][1]["drifted"] is False
    assert DriftReport.from_dict(raw) == report
    assert drift_report.read_report(str(tmp_path / "nothing")) is None


def test_nothing_to_compare_is_said_not_hidden():
    report = DriftReport(1, None, note="no span before 1 under /data (spans present: 1)")
    assert report.headline() == "drift: span 1 not compared: no span before 1 under /data (spans present: 1)"
    assert report.to_dict()["drifted"] is False


def test_settings_come_from_the_config_section_json():
    from pipeline import config as config_lib

    section = config_lib.from_dict({"drift": {"stop_on_drift": True, "image_sample": 40}}).drift
    settings = Settings.from_json(json.dumps(dataclasses.asdict(section)))
    assert settings.stop_on_drift is True and settings.image_sample == 40
    assert settings.features == ["label", "device_id", "lighting"]


def test_run_summary_shows_the_spans_read_and_the_drift():
    from pipeline import run_summary

    summary = run_summary.RunSummary(
        run_id="r1",
        stages=[],
        blessed=None,
        gate=[],
        worst_slices=[],
        failures=[],
        evaluation_uri=None,
        pushed=None,
        examples=[
            {
                "node_id": "ImportExampleGen",
                "artifact_id": 3,
                "span": 7,
                "spans": [5, 6, 7],
                "version": None,
                "input_fingerprint": "span 5: ...",
                "uri": "/root/ImportExampleGen/examples/3",
            }
        ],
        drift=_report().to_dict(),
    )
    assert summary.spans == [5, 6, 7]
    text = run_summary.format_summary(summary)
    assert "trained and evaluated on spans 5-7" in text
    assert "  spans 5-7: ImportExampleGen examples artifact 3" in text
    assert "drift: span 7 vs span 6: 2 of 3 checks above threshold (reported only)" in text
    assert "  DRIFT device_id: infinity_norm 0.2300 > threshold 0.1000" in text
    assert "  ok    label: infinity_norm 0.0200 <= threshold 0.1000" in text
