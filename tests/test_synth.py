"""Unit tests for ``shelf_data.synth``: determinism, the data contract, class mix, CLI."""

from __future__ import annotations

import collections
import glob
import io
import os

import numpy as np
import pytest
from PIL import Image

from shelf_audit import cli
from shelf_data import contract, synth

pytestmark = pytest.mark.unit


def _shard_bytes(out_dir: str, span: int = 1) -> dict[str, bytes]:
    paths = sorted(glob.glob(os.path.join(contract.span_dir(out_dir, span), "*" + contract.SHARD_SUFFIX)))
    result = {}
    for path in paths:
        with open(path, "rb") as f:
            result[os.path.basename(path)] = f.read()
    return result


@pytest.fixture(scope="module")
def records_300(tmp_path_factory) -> tuple[synth.SynthSummary, list[contract.PhotoRecord]]:
    out = str(tmp_path_factory.mktemp("synth300"))
    summary = synth.generate(out, span=1, count=300, seed=1)
    return summary, list(contract.read_records(os.path.join(out, "span-1", "*.tfrecord.gz")))


def test_same_seed_gives_identical_bytes(tmp_path):
    a = synth.generate(str(tmp_path / "a"), span=2, count=60, seed=5, num_shards=3)
    b = synth.generate(str(tmp_path / "b"), span=2, count=60, seed=5, num_shards=3)
    bytes_a, bytes_b = _shard_bytes(str(tmp_path / "a"), 2), _shard_bytes(str(tmp_path / "b"), 2)
    assert len(bytes_a) == 3
    assert bytes_a == bytes_b
    assert a.class_counts == b.class_counts


def test_different_seed_or_span_gives_different_photos(tmp_path):
    base = [r.image for r in synth.iter_photos(20, seed=5, span=1)]
    other_seed = [r.image for r in synth.iter_photos(20, seed=6, span=1)]
    other_span = [r.image for r in synth.iter_photos(20, seed=5, span=2)]
    assert not set(base) & set(other_seed)
    assert not set(base) & set(other_span)
    synth.generate(str(tmp_path / "a"), count=40, seed=5)
    synth.generate(str(tmp_path / "b"), count=40, seed=6)
    assert _shard_bytes(str(tmp_path / "a")) != _shard_bytes(str(tmp_path / "b"))


def test_prefix_is_stable_when_count_grows():
    # Photo i depends only on (seed, span, i), not on how many are generated.
    short = [r.image for r in synth.iter_photos(25, seed=3)]
    longer = [r.image for r in synth.iter_photos(45, seed=3)]
    assert longer[:25] == short


def test_records_satisfy_the_contract(records_300):
    summary, records = records_300
    assert len(records) == summary.count == 300
    modes, sizes = collections.Counter(), set()
    for record in records:
        record.validate()
        assert 0 <= record.label < contract.NUM_CLASSES
        assert contract.LANE_MIN <= record.lane_id <= contract.LANE_MAX
        assert record.device_id in {d.name for d in synth.DEVICES}
        assert record.captured_at is not None and record.captured_at > 1_600_000_000
        assert record.lighting in synth.LIGHTINGS
        image = Image.open(io.BytesIO(record.image))
        assert image.format == "JPEG"
        assert min(image.size) >= contract.MIN_IMAGE_SIDE
        modes[image.mode] += 1
        sizes.add(image.size)
    assert modes["RGB"] > 0 and modes["L"] > 0, modes
    assert len(sizes) > 50, "source sizes should vary"
    assert len({r.device_id for r in records}) == len(synth.DEVICES)
    assert set(r.lighting for r in records) == set(synth.LIGHTINGS)
    assert len({r.lane_id for r in records}) > 30


def test_images_decode_with_tensorflow(records_300):
    import tensorflow as tf

    _, records = records_300
    for record in records[:20]:
        image = tf.io.decode_image(record.image, expand_animations=False)
        assert image.shape[-1] in (1, 3)
        assert min(image.shape[:2]) >= contract.MIN_IMAGE_SIDE


def test_class_shares_match_the_mix(records_300):
    summary, records = records_300
    counts = collections.Counter(contract.LABELS[r.label] for r in records)
    assert dict(counts) == dict(summary.class_counts)
    shares = {k: v / len(records) for k, v in counts.items()}
    assert shares["ok"] == pytest.approx(0.65, abs=0.03)
    assert shares["misplaced"] == pytest.approx(0.25, abs=0.03)
    assert shares["damaged"] == pytest.approx(0.10, abs=0.02)
    # Shuffled, not sorted: the first 20 photos already mix the classes.
    assert len({r.label for r in records[:20]}) == 3


def test_summary_and_default_shards(records_300, tmp_path):
    summary, _ = records_300
    assert len(summary.paths) == 1 and all(os.path.exists(p) for p in summary.paths)
    assert summary.bytes_written == sum(os.path.getsize(p) for p in summary.paths)
    assert summary.seconds > 0 and summary.photos_per_second > 0
    assert synth.default_num_shards(1) == 1
    assert synth.default_num_shards(1000) == 2
    assert synth.default_num_shards(18_000) == 36


def test_timestamps_increase_within_a_span():
    stamps = [r.captured_at for r in synth.iter_photos(30, seed=2, span=4)]
    assert stamps == sorted(stamps)


def test_photos_differ_in_brightness_by_lighting(records_300):
    _, records = records_300
    means = collections.defaultdict(list)
    for record in records:
        means[record.lighting].append(np.asarray(Image.open(io.BytesIO(record.image)).convert("L")).mean())
    assert np.mean(means["dim"]) < 0.7 * np.mean(means["normal"])
    assert np.mean(means["normal"]) < np.mean(means["bright"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"count": 0}, "count=0"),
        ({"seed": -1}, "seed=-1"),
        ({"span": -2}, "span=-2"),
        ({"num_shards": 0}, "num_shards=0"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synth.generate(str(tmp_path), **kwargs)


def test_existing_span_folder_fails_clearly(tmp_path):
    synth.generate(str(tmp_path), span=3, count=5)
    with pytest.raises(FileExistsError, match="already holds"):
        synth.generate(str(tmp_path), span=3, count=5)
    # Through the CLI: a non-zero exit status, and the first shards are untouched.
    before = _shard_bytes(str(tmp_path), 3)
    assert cli.main(["synth", "--out", str(tmp_path), "--span", "3", "--count", "5"]) == cli.EXIT_ERROR
    assert _shard_bytes(str(tmp_path), 3) == before


def test_cli_writes_files(tmp_path, capsys):
    out = str(tmp_path / "bucket")
    assert cli.main(["synth", "--out", out, "--count", "30", "--seed", "1"]) == cli.EXIT_OK
    shards = _shard_bytes(out, 1)
    assert list(shards) == ["part-00000-of-00001.tfrecord.gz"]
    assert len(list(contract.read_records(os.path.join(out, "span-1", "*.tfrecord.gz")))) == 30
    assert "wrote 30 photos" in capsys.readouterr().out


def test_cli_shards_flag(tmp_path):
    out = str(tmp_path)
    assert cli.main(["synth", "--out", out, "--count", "12", "--span", "7", "--shards", "4"]) == cli.EXIT_OK
    assert len(_shard_bytes(out, 7)) == 4
