"""Unit tests of report/split_stats.py: photos per split and class from TFDV statistics."""

from __future__ import annotations

import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from report import split_stats

pytestmark = pytest.mark.unit


def _write_stats(folder, split: str, total: int, per_label: dict[str, int]) -> None:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=total)
    feature = dataset.features.add()
    feature.path.step.append("label")
    for label, count in per_label.items():
        feature.string_stats.rank_histogram.buckets.add(label=label, sample_count=count)
    (folder / f"Split-{split}").mkdir(parents=True)
    (folder / f"Split-{split}" / split_stats.STATS_FILE).write_bytes(stats.SerializeToString())


def test_counts_per_split_and_class_come_from_the_label_rank_histogram(tmp_path):
    _write_stats(tmp_path, "train", 80, {"0": 52, "1": 20, "2": 8})
    _write_stats(tmp_path, "eval", 10, {"0": 7, "2": 3})
    counts = split_stats.read_split_counts(str(tmp_path), ["train", "validation", "eval"])
    assert counts == {
        "train": {"examples": 80, "ok": 52, "misplaced": 20, "damaged": 8},
        "eval": {"examples": 10, "ok": 7, "misplaced": 0, "damaged": 3},
    }  # validation has no statistics: absent, not zero


def test_split_record_and_table_say_how_the_photos_were_split(tmp_path):
    record = split_stats.split_record(
        {"train": 8, "validation": 1, "eval": 1}, "lane_id", 42, {"train": {"examples": 5, "ok": 5}}
    )
    assert record["method"] == "deterministic hash of the lane_id feature"
    assert record["training_seed"] == 42 and record["partition_feature"] == "lane_id"
    table = split_stats.format_split_table(record)
    assert "training seed 42" in table
    train_row = next(line for line in table.splitlines() if line.strip().startswith("train"))
    assert train_row.split() == ["train", "8", "5", "5", "?", "?"]
    assert split_stats.split_record({"train": 1}, "", 7, {})["partition_feature"] is None
