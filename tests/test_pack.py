"""Tests for ``shelf-audit pack``: round trip, the skip report, exit statuses."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from shelf_audit import cli
from shelf_audit.exit_codes import EXIT_SKIPPED
from shelf_audit.pack_cmd import EXIT_STATUS
from shelf_data import contract
from shelf_data.pack import BadPhoto, PackError, check_image, pack

pytestmark = pytest.mark.unit


def _records_by_bytes(out_dir: Path, span: int = 1) -> dict[bytes, contract.PhotoRecord]:
    records = list(contract.read_records(str(out_dir / f"span-{span}" / "*.tfrecord*")))
    by_bytes = {r.image: r for r in records}
    assert len(by_bytes) == len(records), "two records hold the same image"
    return by_bytes


def _pack_cli(folder, out: Path, *extra: str) -> int:
    return cli.main(
        [
            "pack",
            str(folder.root),
            "--out",
            str(out),
            "--lane",
            str(folder.default_lane),
            "--device",
            folder.default_device,
            *extra,
        ]
    )


def test_pack_round_trips_photos_bytes_labels_and_metadata(photo_folder, tmp_path):
    out = tmp_path / "data"
    report = pack(
        str(photo_folder.root), str(out), lane_id=photo_folder.default_lane, device_id=photo_folder.default_device
    )

    assert EXIT_STATUS[report.outcome] == 0
    assert report.skipped == []
    assert report.class_counts == photo_folder.class_counts()
    records = _records_by_bytes(out)
    assert len(records) == len(photo_folder.expected)
    for rel, want in photo_folder.expected.items():
        got = records[want.image]  # original bytes, not re-encoded
        assert (got.label, got.lane_id, got.device_id, got.captured_at, got.lighting) == (
            want.label,
            want.lane_id,
            want.device_id,
            want.captured_at,
            want.lighting,
        ), rel
    # The span folder holds shards only: ImportExampleGen reads span-N/*.
    assert sorted(p.name for p in (out / "span-1").iterdir()) == ["part-00000-of-00001.tfrecord.gz"]
    saved = json.loads((out / "pack-report-span-1.json").read_text())
    assert saved["packed"] == len(photo_folder.expected)
    assert saved["skipped"] == []
    assert EXIT_STATUS[saved["outcome"]] == 0


def test_pack_is_deterministic_and_honours_shards(photo_folder, tmp_path):
    kwargs = {"lane_id": photo_folder.default_lane, "device_id": photo_folder.default_device, "num_shards": 3}
    first = pack(str(photo_folder.root), str(tmp_path / "a"), **kwargs)
    second = pack(str(photo_folder.root), str(tmp_path / "b"), **kwargs)

    assert len(first.shards) == 3
    for a, b in zip(first.shards, second.shards, strict=True):
        assert Path(a).name == Path(b).name
        # Same records in the same order. (Not byte-identical files: the C++
        # protobuf serialises the Example feature map in hash order unless
        # SerializeToString(deterministic=True) is used in contract.py.)
        assert list(contract.read_records(a)) == list(contract.read_records(b))


def test_bad_files_are_reported_by_name_others_packed_and_exit_is_4(photo_folder, make_image, tmp_path, capsys):
    root = photo_folder.root
    good_jpeg = make_image("RGB", (200, 150), "JPEG", seed=99)
    (root / "ok" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (root / "ok" / "notes.jpg").write_text("this is not a photo\n")
    (root / "damaged" / "tiny.png").write_bytes(make_image("RGB", (40, 200), "PNG", seed=98))
    (root / "ok" / "later-copy.jpg").write_bytes(photo_folder.expected["ok/gray.jpg"].image)
    (root / "damaged" / "conflict.png").write_bytes(make_image("RGB", (90, 90), "PNG", seed=95))
    (root / "ok" / "conflict.png").write_bytes(make_image("RGB", (90, 90), "PNG", seed=95))
    (root / "ok" / "photo.gif").write_bytes(_gif())
    (root / "unsorted").mkdir()
    (root / "unsorted" / "x.jpg").write_bytes(make_image("RGB", (80, 80), seed=97))
    (root / "README.txt").write_text("photos from lane 3\n")
    (root / "ok" / ".DS_Store").write_bytes(b"\0\1")
    (root / "misplaced" / "lane99.jpg").write_bytes(make_image("L", (90, 90), seed=96))
    with (root / "metadata.csv").open("a") as handle:
        handle.write("misplaced/lane99.jpg,99,tc52-a,,\n")
        handle.write("ok/gone.jpg,4,tc52-a,,\n")

    out = tmp_path / "data"
    status = _pack_cli(photo_folder, out)
    printed = capsys.readouterr().out

    assert status == EXIT_SKIPPED == 4
    reasons = {s["path"]: s["reason"] for s in json.loads((out / "pack-report-span-1.json").read_text())["skipped"]}
    assert set(reasons) == {
        "ok/truncated.jpg",
        "ok/notes.jpg",
        "ok/photo.gif",
        "damaged/tiny.png",
        "ok/later-copy.jpg",
        "ok/conflict.png",
        "damaged/conflict.png",
        "unsorted/x.jpg",
        "README.txt",
        "misplaced/lane99.jpg",
        "metadata.csv line 10",
    }
    assert "truncated" in reasons["ok/truncated.jpg"]
    assert "not an image" in reasons["ok/notes.jpg"]
    assert "GIF" in reasons["ok/photo.gif"]
    assert "too small: 40x200" in reasons["damaged/tiny.png"]
    assert "same photo as ok/gray.jpg" in reasons["ok/later-copy.jpg"]  # the first copy is kept
    assert "conflicting labels" in reasons["ok/conflict.png"]
    assert "conflicting labels" in reasons["damaged/conflict.png"]
    assert "not a class folder" in reasons["unsorted/x.jpg"]
    assert "lane_id=99" in reasons["misplaced/lane99.jpg"]
    assert "ok/gone.jpg" in reasons["metadata.csv line 10"]
    for path in reasons:
        assert path in printed
    assert ".DS_Store" not in reasons  # hidden files are ignored, and counted
    # Every good photo still made it, with the right label.
    records = _records_by_bytes(out)
    assert {r.image for r in records.values()} == {p.image for p in photo_folder.expected.values()}


def test_nothing_packable_exits_1_and_leaves_no_span(make_image, tmp_path):
    root = tmp_path / "photos"
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (root / "ok" / "small.jpg").write_bytes(make_image("L", (32, 32)))
    out = tmp_path / "data"

    status = cli.main(["pack", str(root), "--out", str(out), "--lane", "1", "--device", "d"])

    assert status == 1
    assert not (out / "span-1").exists()
    saved = json.loads((out / "pack-report-span-1.json").read_text())
    assert [s["path"] for s in saved["skipped"]] == ["ok/broken.jpg", "ok/small.jpg"]


def test_missing_photo_dir_or_no_class_folder_exits_1(tmp_path, caplog):
    assert cli.main(["pack", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--lane", "1", "--device", "d"]) == 1
    assert "photo folder not found" in caplog.text

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    assert cli.main(["pack", str(tmp_path / "flat"), "--out", str(tmp_path / "o"), "--lane", "1", "--device", "d"]) == 1
    assert "class folders" in caplog.text


def test_no_metadata_and_no_defaults_is_refused(photo_folder, tmp_path):
    (photo_folder.root / "metadata.csv").unlink()
    with pytest.raises(PackError, match="--lane and --device"):
        pack(str(photo_folder.root), str(tmp_path / "data"))


def test_photo_without_row_and_no_defaults_is_skipped(photo_folder, tmp_path):
    report = pack(str(photo_folder.root), str(tmp_path / "data"))

    no_row = {p for p, e in photo_folder.expected.items() if e.device_id == photo_folder.default_device}
    assert {s.path for s in report.skipped} == no_row
    assert EXIT_STATUS[report.outcome] == EXIT_SKIPPED


def test_metadata_without_required_column_is_refused(photo_folder, tmp_path):
    (photo_folder.root / "metadata.csv").write_text("file,lane\nok/gray.jpg,3\n")
    with pytest.raises(PackError, match="device_id"):
        pack(str(photo_folder.root), str(tmp_path / "data"), lane_id=1, device_id="d")


def test_existing_span_is_refused(photo_folder, tmp_path):
    kwargs = {"lane_id": photo_folder.default_lane, "device_id": photo_folder.default_device}
    pack(str(photo_folder.root), str(tmp_path / "data"), **kwargs)
    with pytest.raises(PackError, match="already holds"):
        pack(str(photo_folder.root), str(tmp_path / "data"), **kwargs)


def test_check_image_rejects_cmyk_jpeg_that_tensorflow_cannot_decode_to_gray():
    buffer = io.BytesIO()
    Image.new("CMYK", (80, 80), (10, 20, 30, 0)).save(buffer, format="JPEG")
    with pytest.raises(BadPhoto, match="CMYK"):
        check_image(buffer.getvalue())


def test_check_image_accepts_gray_and_rgb(make_image):
    assert check_image(make_image("L", (64, 100))) == ("JPEG", (64, 100), "L")
    assert check_image(make_image("RGB", (100, 64), "PNG")) == ("PNG", (100, 64), "RGB")


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 80), (200, 10, 10)).save(buffer, format="GIF")
    return buffer.getvalue()
