"""Pipeline tier: planted bad data through the real ``shelf-audit run``.

Each case builds its own span with ``shelf_data.synth`` and plants a fault:

* a few photos that do not decode or are too small (under 1%): the run completes
  and publishes; the summary and the manifest count and list the dropped ones by
  input file and record index;
* many such photos: the run stops before Transform with the list, exit 1;
* a gzip TFRecord file cut in the middle: exit 1, the message names the file,
  the record index and the byte offset (no hex dump);
* an empty newest span folder: exit 1 in seconds, the message names the folder;
* a span of ``ok`` photos only: exit 1 before Transform, naming the missing classes.

Nothing is published in any stopped case. Tiny: a few hundred photos, 1 epoch of 2 steps.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import tiny
from tfx.orchestration import metadata

from bucket import versions
from pipeline import run_summary
from shelf_data import synth
from shelf_data.contract import PhotoRecord, ShardedWriter, make_example

pytestmark = pytest.mark.e2e


def _run(tmp: Path) -> subprocess.CompletedProcess:
    config = tiny.write_tiny_config(tmp / "tiny.toml", "bad-data-e2e")
    return tiny.run_cli("run", "--config", config, "--data", tmp / "data", "--home", tmp / "home", timeout=2400)


def _published(tmp: Path) -> list[str]:
    bucket = tmp / "home" / "bucket"
    return versions.list_versions(str(bucket), "shelf_audit") if bucket.exists() else []


def _stages(tmp: Path) -> set[str]:
    from tfx import v1 as tfx

    path = tmp / "home" / "metadata.sqlite"
    if not path.exists():
        return set()
    with metadata.Metadata(tfx.orchestration.metadata.sqlite_metadata_connection_config(str(path))) as m:
        _, stages = run_summary.read_stages(m.store, "bad-data-e2e")
    return {s.node_id for s in stages}


def _plant(span_dir: Path, name: str, good: int, bad: list[bytes], seed: int = 99) -> Path:
    """A gzip TFRecord file of ``good`` synthetic photos with the ``bad`` images planted at indices 1, 3, 5, ..."""
    import tensorflow as tf

    photos = list(synth.iter_photos(good, seed=seed, span=1))
    records = []
    for i, photo in enumerate(photos):
        records.append(photo)
        if i < len(bad):
            records.append(
                PhotoRecord(image=bad[i], label=photo.label, lane_id=photo.lane_id, device_id=photo.device_id)
            )
    path = span_dir / name
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for r in records:
            writer.write(make_example(r).SerializeToString(deterministic=True))
    return path


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (32, 32), 128).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_few_bad_photos_are_dropped_listed_and_the_model_published(tmp_path):
    synth.generate(str(tmp_path / "data"), span=1, count=300, seed=11)
    bad = [b"\xff\xd8\xff not a jpeg", _tiny_jpeg(), b"GIF89a broken"]
    _plant(tmp_path / "data" / "span-1", "upload-7.tfrecord.gz", good=8, bad=bad)  # 311 photos, 3 bad (0.96%)
    proc = _run(tmp_path)
    assert proc.returncode == 0, tiny.explain(proc)
    line = "data: 3 of 311 records dropped (does not decode: 2, too small: 1); list: "
    assert line in proc.stdout, tiny.explain(proc)
    (version,) = _published(tmp_path)
    manifest = versions.read_manifest(str(tmp_path / "home" / "bucket"), "shelf_audit", version)
    quality = manifest["data_quality"]
    assert quality["read"] == 311 and quality["dropped"] == 3
    assert quality["by_reason"] == {"does not decode": 2, "too small": 1}
    assert [(r["file"], r["index"], r["reason"]) for r in quality["records"]] == [
        ("span-1/upload-7.tfrecord.gz", 1, "does not decode"),
        ("span-1/upload-7.tfrecord.gz", 3, "too small"),
        ("span-1/upload-7.tfrecord.gz", 5, "does not decode"),
    ]
    for r in quality["records"]:
        assert r["device_id"] and r["lane_id"] and r["split"] in ("train", "validation", "eval"), r
    assert sum(s["read"] for s in quality["by_split"].values()) == 311


def test_many_bad_photos_stop_the_run_before_transform(tmp_path):
    synth.generate(str(tmp_path / "data"), span=1, count=200, seed=11)
    _plant(tmp_path / "data" / "span-1", "upload-8.tfrecord.gz", good=30, bad=[b"not an image"] * 30)
    proc = _run(tmp_path)
    assert proc.returncode == 1, tiny.explain(proc)
    assert "30 of 260 records have an unusable image (does not decode: 30), above data.max_bad_fraction" in proc.stderr
    assert "span-1/upload-8.tfrecord.gz record 1 (" in proc.stderr, tiny.explain(proc)
    assert "Transform" not in _stages(tmp_path) and "Trainer" not in _stages(tmp_path)
    assert _published(tmp_path) == []


def test_a_truncated_file_names_the_file_and_offset(tmp_path):
    summary = synth.generate(str(tmp_path / "data"), span=1, count=120, seed=5, num_shards=2)
    shard = Path(summary.paths[0])
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    proc = _run(tmp_path)
    assert proc.returncode == 1, tiny.explain(proc)
    assert f"span-1/{shard.name}: record " in proc.stderr and " at byte " in proc.stderr, tiny.explain(proc)
    assert "truncated or corrupt file" in proc.stderr and "Fewer than" not in proc.stderr, tiny.explain(proc)
    (failed,) = [line for line in proc.stderr.splitlines() if "run failed after" in line]
    assert f"s: span-1/{shard.name}: record " in failed and "[while running" not in failed, failed
    assert "Trainer" not in _stages(tmp_path) and _published(tmp_path) == []


def test_an_empty_span_names_the_folder_and_stops_at_once(tmp_path):
    synth.generate(str(tmp_path / "data"), span=1, count=40, seed=5)
    (tmp_path / "data" / "span-2").mkdir()
    (tmp_path / "data" / "span-2" / "notes.txt").write_text("upload pending")
    proc = _run(tmp_path)
    assert proc.returncode == 1, tiny.explain(proc)
    assert "span 2: span-2/ holds no *.tfrecord* files (found: notes.txt)" in proc.stderr, tiny.explain(proc)
    assert str(tmp_path / "data") in proc.stderr and "Cannot find matching" not in proc.stderr
    assert _stages(tmp_path) == set() and _published(tmp_path) == []


def test_a_span_of_one_class_stops_before_training_naming_the_missing_classes(tmp_path):
    with ShardedWriter(str(tmp_path / "data"), 1, 2) as writer:
        writer.write_all(p for p in synth.iter_photos(400, seed=3, span=1) if p.label == 0)
    proc = _run(tmp_path)
    assert proc.returncode == 1, tiny.explain(proc)
    assert "train: class 'misplaced' has 0 photo(s), fewer than data.min_class_count = 1" in proc.stderr
    assert "eval: class 'damaged' has 0 photo(s)" in proc.stderr, tiny.explain(proc)
    assert "Trainer" not in _stages(tmp_path) and _published(tmp_path) == []
