"""Tests for ``shelf-audit inspect``: counts per span/class/lane/device and the contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from shelf_audit import cli
from shelf_data import contract
from shelf_data.inspect import DataSummary, format_summary, inspect, sheet_size

pytestmark = pytest.mark.unit

# (span, label, lane, device, lighting): span 1 is GZIP, span 2 a plain TFRecord.
_ROWS = (
    (1, 0, 3, "tc52", "dim"),
    (1, 0, 3, "tc52", None),
    (1, 0, 4, "ct40", "bright"),
    (1, 1, 4, "ct40", None),
    (1, 2, 5, "tc52", "dim"),
    (2, 0, 3, "mc33", None),
    (2, 1, 3, "tc52", None),
    (2, 1, 40, "tc52", None),
)


@pytest.fixture
def data_dir(tmp_path: Path, make_image) -> Path:
    """Two spans of hand-made records with the counts of :data:`_ROWS`."""
    records = [
        (span, contract.PhotoRecord(make_image("RGB", (96, 80), seed=i), label, lane, device, 1_700_000_000, light))
        for i, (span, label, lane, device, light) in enumerate(_ROWS)
    ]
    with contract.ShardedWriter(str(tmp_path), 1, num_shards=2) as writer:
        writer.write_all(r for span, r in records if span == 1)
    span2 = tmp_path / "span-2"
    span2.mkdir()
    with tf.io.TFRecordWriter(str(span2 / "part-00000-of-00001.tfrecord")) as plain:
        for span, record in records:
            if span == 2:
                plain.write(contract.make_example(record).SerializeToString())
    # An unfinished shard of a running writer must not be counted.
    (span2 / "part-00009-of-00010.tfrecord.gz.tmp").write_bytes(b"half-written")
    return tmp_path


def test_counts_per_span_class_lane_device_and_lighting(data_dir: Path):
    summary = inspect(str(data_dir), per_class=2)

    assert summary.total == 8
    assert summary.spans == {"span-1": 5, "span-2": 3}
    assert summary.span_classes == {
        "span-1": {"ok": 3, "misplaced": 1, "damaged": 1},
        "span-2": {"ok": 1, "misplaced": 2, "damaged": 0},
    }
    assert summary.classes == {"ok": 4, "misplaced": 3, "damaged": 1}
    assert summary.lanes == {3: 4, 4: 2, 5: 1, 40: 1}
    assert summary.devices == {"tc52": 5, "ct40": 2, "mc33": 1}
    assert summary.lighting == {"(none)": 5, "dim": 2, "bright": 1}
    assert summary.unreadable == 0
    assert len(summary.files) == 3  # two GZIP shards + one plain file, no .tmp


def test_contact_sheet_has_one_row_per_class(data_dir: Path, tmp_path: Path):
    sheet = tmp_path / "out" / "sheet.png"
    summary = inspect(str(data_dir), sheet_path=str(sheet), per_class=3)

    assert summary.sheet_path == str(sheet)
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        assert image.size == sheet_size(3, 3)
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # photos were drawn, not an empty canvas


def test_cli_prints_tables_and_writes_default_sheet(data_dir: Path, capsys):
    assert cli.main(["inspect", str(data_dir), "--per-class", "2"]) == 0

    printed = capsys.readouterr().out
    assert "span-2" in printed and "misplaced" in printed and "37.5%" in printed  # 3 of 8
    assert "mc33" in printed and "bright" in printed
    with Image.open(data_dir / "contact_sheet.png") as image:
        assert image.size == sheet_size(3, 2)


def test_no_records_exits_1_with_message(tmp_path: Path, caplog):
    assert cli.main(["inspect", str(tmp_path)]) == 1
    assert "no records found" in caplog.text
    assert not (tmp_path / "contact_sheet.png").exists()


def test_format_summary_reports_out_of_contract_labels():
    summary = DataSummary(
        data_dir="d",
        files=("d/span-1/a.tfrecord",),
        spans={"span-1": 2},
        span_classes={"span-1": {"ok": 1, "misplaced": 0, "damaged": 0, "label 7": 1}},
        classes={"ok": 1, "misplaced": 0, "damaged": 0, "label 7": 1},
        lanes={1: 2},
        devices={"x": 2},
        lighting={"(none)": 2},
    )
    text = format_summary(summary)
    assert "label 7" in text
    assert "lighting" not in text  # no lighting table when no record has one
