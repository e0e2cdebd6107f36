"""Unit tier: the bad-record policy's pieces: the TFRecord reader, the photo check, the report and the gate's rules.

Every file here is built by the test: good and planted-bad photos through the
data contract, TFRecord files cut mid-record or with a flipped byte.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from support.span_helpers import gray_jpeg

from components import data_gate
from components.example_gen import record_check
from shelf_data import bad_records, spans, window
from shelf_data.contract import PhotoRecord, make_example

pytestmark = pytest.mark.unit

SPLITS = ["train", "validation", "eval"]


def _example(image: bytes, i: int = 0, label: int = 0) -> bytes:
    record = PhotoRecord(image=image, label=label, lane_id=1 + i % 40, device_id="zebra-tc52", captured_at=1000 + i)
    return make_example(record).SerializeToString()


def _write(path: Path, records: list[bytes], compress: bool = True) -> Path:
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP" if compress else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for r in records:
            writer.write(r)
    return path


def test_reader_gives_index_offset_and_record_of_gzip_and_plain_files(tmp_path):
    records = [_example(gray_jpeg(100, seed=i), i) for i in range(3)]
    for compress in (True, False):
        path = _write(tmp_path / f"f-{compress}.tfrecord", records, compress)
        got = list(record_check.read_tfrecords(str(path)))
        assert [r for _, _, r in got] == records
        assert [i for i, _, _ in got] == [0, 1, 2]
        assert [o for _, o, _ in got] == [0, 16 + len(records[0]), 32 + len(records[0]) + len(records[1])]


def test_a_file_cut_mid_record_names_file_record_and_offset(tmp_path):
    records = [_example(gray_jpeg(100, seed=i), i) for i in range(3)]
    plain = _write(tmp_path / "plain.tfrecord", records, compress=False)
    data = plain.read_bytes()
    cut = 16 * 2 + len(records[0]) + len(records[1]) + 100  # 100 bytes into record 2
    plain.write_bytes(data[:cut])
    with pytest.raises(record_check.CorruptRecordFileError) as e:
        list(record_check.read_tfrecords(str(plain), "span-1/plain.tfrecord"))
    offset = 32 + len(records[0]) + len(records[1])
    assert str(e.value).startswith(f"span-1/plain.tfrecord: record 2 at byte {offset}: the file ends inside the record")
    assert "truncated" in str(e.value) and "\\x" not in str(e.value)

    # The same file gzipped and the compressed bytes cut: the gzip stream ends early.
    gz = tmp_path / "part.tfrecord.gz"
    gz.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    with pytest.raises(record_check.CorruptRecordFileError, match=r"^.*part\.tfrecord\.gz: record \d+ at byte \d+: "):
        list(record_check.read_tfrecords(str(gz)))


def test_a_flipped_byte_is_a_checksum_error(tmp_path):
    records = [_example(gray_jpeg(100, seed=i), i) for i in range(2)]
    path = _write(tmp_path / "x.tfrecord", records, compress=False)
    data = bytearray(path.read_bytes())
    data[16 + len(records[0]) + 12 + 40] ^= 0xFF  # inside record 1's data
    path.write_bytes(bytes(data))
    with pytest.raises(record_check.CorruptRecordFileError, match=r"record 1 at byte \d+: the record's data checksum"):
        list(record_check.read_tfrecords(str(path)))


def test_image_checker_reasons_are_readable():
    checker = record_check.ImageChecker()
    assert checker.problem(gray_jpeg(100, (80, 64))) == ("", "")
    reason, detail = checker.problem(b"\xff\xd8 not a jpeg at all")
    assert reason == bad_records.DOES_NOT_DECODE
    assert detail and "Graph execution" not in detail and "node" not in detail, detail
    assert checker.problem(gray_jpeg(100, (40, 200))) == (bad_records.TOO_SMALL, "40x200, below 64x64")
    assert checker.problem(b"")[0] == bad_records.NO_IMAGE


def test_checking_many_photos_at_once_gives_what_one_at_a_time_gives():
    checker = record_check.ImageChecker()
    good = gray_jpeg(100, (80, 64))
    truncated = good[: len(good) // 2]
    photos = [good, b"\xff\xd8 not a jpeg at all", gray_jpeg(100, (40, 200)), b"", truncated, good]
    assert checker.problems(photos) == [checker.problem(p) for p in photos]
    assert [r for r, _ in checker.problems(photos)][:4] == [
        "",
        bad_records.DOES_NOT_DECODE,
        bad_records.TOO_SMALL,
        bad_records.NO_IMAGE,
    ]
    assert checker.problems([]) == []


def _split_config():
    from tfx.proto import example_gen_pb2

    return example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in zip(SPLITS, (8, 1, 1), strict=True)
        ]
    )


def test_the_dofn_drops_bad_photos_with_file_index_split_and_who(tmp_path):
    import apache_beam as beam
    import tensorflow as tf
    from tfx.components.example_gen.base_example_gen_executor import _PartitionFn

    images = [gray_jpeg(100, seed=i) for i in range(12)]
    images[3] = b"garbage"
    images[7] = gray_jpeg(100, (30, 30))
    path = _write(tmp_path / "data" / "span-1" / "part-0.tfrecord.gz", [_example(im, i) for i, im in enumerate(images)])
    fn = record_check.ReadAndCheckFile(str(tmp_path / "data"), SPLITS, [8, 9, 10], _split_config().SerializeToString())
    fn.setup()
    out = list(fn.process(str(path)))
    kept = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    bad = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == record_check.BAD_TAG]
    (counts,) = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == record_check.COUNTS_TAG]
    assert len(kept) == 10 and all(isinstance(k, tf.train.Example) for k in kept)
    assert [(b["file"], b["index"], b["reason"]) for b in bad] == [
        ("span-1/part-0.tfrecord.gz", 3, "does not decode"),
        ("span-1/part-0.tfrecord.gz", 7, "too small"),
    ]
    assert bad[0]["lane_id"] == "4" and bad[0]["device_id"] == "zebra-tc52" and bad[0]["captured_at"] == "1003"
    # The split of a dropped record is the one TFX's partition would have given it.
    dropped = tf.train.Example.FromString(_example(images[3], 3))
    assert bad[0]["split"] == SPLITS[_PartitionFn(dropped, 3, [8, 9, 10], _split_config())]
    assert sum(counts["read"].values()) == 12
    assert sum(sum(v.values()) for v in counts["labels"].values()) == 10
    assert set(counts["labels"]["train"]) <= {"ok"}


def _report(read: dict, dropped_per_split: dict, limit: float = 0.01) -> dict:
    dropped = [
        {"file": "span-1/a.tfrecord.gz", "index": i, "split": s, "reason": "does not decode"}
        for s, n in dropped_per_split.items()
        for i in range(n)
    ]
    return bad_records.build_report("/data", limit, read, dropped, SPLITS)


def test_report_counts_fractions_and_caps_the_list(tmp_path):
    report = _report({"train": 2000, "validation": 250, "eval": 250}, {"train": 1100, "eval": 2})
    assert report["read"] == 2500 and report["dropped"] == 1102
    assert report["by_split"]["eval"] == {"read": 250, "dropped": 2, "fraction": 0.008}
    assert report["by_reason"] == {"does not decode": 1102}
    assert len(report["records"]) == bad_records.MAX_RECORDS
    assert bad_records.over_limit(report) == [
        "all splits (1102 of 2500, 44.1%)",
        f"train (1100 of 2000, 55.0%; allowed {bad_records.split_allowance(2000, 0.01)})",
    ]
    assert len(bad_records.manifest_entry(report)["records"]) == bad_records.MANIFEST_RECORDS
    path = bad_records.write_bad_records(str(tmp_path / "ex"), report)
    assert json.loads(Path(path).read_text()) == report == bad_records.read_bad_records(str(tmp_path / "ex"))
    assert bad_records.read_bad_records(str(tmp_path / "nothing")) is None
    line = bad_records.summary_line(report, path)
    assert line == f"data: 1102 of 2500 records dropped (does not decode: 1102); list: {path}"


def test_split_allowance_leaves_room_for_chance_on_small_splits():
    assert bad_records.split_allowance(60, 0.01) == 3  # 0.6 + 3 * 0.77
    assert bad_records.split_allowance(14400, 0.01) == 180  # 144 + 36: 1.25%
    assert bad_records.split_allowance(0, 0.01) == 0
    assert bad_records.split_allowance(500, 0.0) == 0


def test_below_the_limit_passes_above_it_stops_with_the_list():
    # 6 of 600 (1%, as in the issue), 2 of them landing in the small eval split: the run goes on.
    below = _report({"train": 480, "validation": 60, "eval": 60}, {"train": 4, "eval": 2})
    assert data_gate.check([], below, 0) == []
    overall = _report({"train": 480, "validation": 60, "eval": 60}, {"train": 6, "eval": 1})  # 7 of 600
    assert "in all splits (7 of 600, 1.2%)" in data_gate.check([], overall, 0)[0]
    eval_only = _report({"train": 4800, "validation": 600, "eval": 600}, {"eval": 20})  # 0.33% overall, 3.3% of eval
    lines = data_gate.check([], eval_only, 0, "/x/bad_records.json")
    assert "above data.max_bad_fraction = 0.01 in eval (20 of 600, 3.3%; allowed 14)" in lines[0]
    assert "all splits" not in lines[0] and "/x/bad_records.json" in lines[0]
    assert "span-1/a.tfrecord.gz record 0 (eval): does not decode" in lines[1]
    assert len(lines) == 1 + data_gate.MAX_LISTED  # the 20 records, no "... and N more"
    many = _report({"train": 480, "validation": 60, "eval": 60}, {"train": 30})
    assert data_gate.check([], many, 0)[-1] == "  ... and 10 more"


def test_a_missing_class_stops_naming_class_and_split():
    report = _report({"train": 160, "validation": 20, "eval": 20}, {})
    report["labels"] = {"train": {"ok": 160}, "validation": {"ok": 20}, "eval": {"ok": 19, "damaged": 1}}
    text = "\n".join(data_gate.check([], report, 1))
    assert "train: class 'misplaced' has 0 photo(s), fewer than data.min_class_count = 1" in text
    assert "train: class 'damaged' has 0 photo(s)" in text
    assert "eval: class 'misplaced' has 0" in text and "eval: class 'damaged'" not in text
    report["labels"] = {s: {"ok": 5, "misplaced": 5, "damaged": 5} for s in SPLITS}
    assert data_gate.check([], report, 5) == []
    assert data_gate.check(["train: label: out of domain"], report, 5)[0].startswith("the examples break")


def test_an_empty_newest_span_folder_names_folder_pattern_and_contents(tmp_path):
    from support.span_helpers import Mix, write_span

    write_span(tmp_path, 1, Mix(count=3))
    (tmp_path / "span-2").mkdir()
    (tmp_path / "span-2" / "notes.txt").write_text("upload pending")
    with pytest.raises(ValueError) as e:
        window.resolve(str(tmp_path), window.input_config(), spans.parse("latest"))
    message = str(e.value)
    assert "span 2: span-2/ holds no *.tfrecord* files (found: notes.txt)" in message
    assert str(tmp_path) in message and "span-{SPAN}/*.tfrecord*" in message
    assert window.resolve(str(tmp_path), window.input_config(), spans.parse("1")).spans == (1,)


def test_no_span_at_all_names_the_data_root_and_what_it_holds(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"no span found under the data root .*photos: .*\(found: readme\.md\)"):
        window.resolve(str(tmp_path / "photos"), window.input_config(), spans.parse("latest"))
    with pytest.raises(ValueError, match=r"does not exist"):
        window.resolve(str(tmp_path / "nope"), window.input_config(), spans.parse("latest"))


def test_a_corrupt_file_error_reaches_the_run_log_without_beam_wrapping():
    from shelf_audit.run_cmd import stage_error_text

    text = "span-1/a.tfrecord.gz: record 19 at byte 184411: the gzip stream is broken (x): truncated or corrupt file"
    wrapped = record_check.CorruptRecordFileError(text + " [while running 'ReadAndCheck/ParDo(ReadAndCheckFile)']")
    assert stage_error_text(wrapped) == text + " (ExampleGen stopped: fix or remove the file)"
    nested = RuntimeError(
        f"Traceback ...\ncomponents.example_gen.record_check.CorruptRecordFileError: {text} [while running 'R']"
    )
    assert stage_error_text(nested).startswith(text)
    assert stage_error_text(ValueError("other\nlines")) == "other\nlines"


def test_the_run_command_names_an_empty_span_before_building_anything(tmp_path):
    from support.span_helpers import Mix, write_span

    from pipeline import config as config_lib
    from shelf_audit.run_cmd import resolve_spans

    write_span(tmp_path, 1, Mix(count=2))
    config = config_lib.PipelineConfig()
    assert resolve_spans(config, str(tmp_path)).spans == (1,)
    (tmp_path / "span-2").mkdir()
    with pytest.raises(ValueError, match=r"^cannot read the spans \(latest\): span 2: span-2/ holds no"):
        resolve_spans(config, str(tmp_path))
