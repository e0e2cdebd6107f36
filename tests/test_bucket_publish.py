"""Tests of the bucket package: layout, atomic publish, dedup, rollback, memory://, create-only writes."""

from __future__ import annotations

import datetime
import json
import uuid
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from support import tflite_helpers as helpers

from bucket import history as bucket_history
from bucket import layout, publish, storage, verify, versions
from shelf_data.contract import LABELS
from shelf_tflite import runtime

pytestmark = pytest.mark.component

T0 = datetime.datetime(2026, 11, 25, 12, 1, 2, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, bytes]:
    """Two different real models (fp32) so versions can differ."""
    return helpers.fp32_models(tmp_path_factory.mktemp("bucket_models"), {"a": 0.0, "b": 0.5})


def _payload(model: bytes):
    images, labels = helpers.make_images(4, seed=5)
    out = runtime.run_tflite(model, images)
    files = {"model.tflite": model, "model_fp32.tflite": model, "labels.txt": b"ok\nmisplaced\ndamaged\n"}
    golden = publish.build_golden(
        images, labels, out, {"model.tflite": out, "model_fp32.tflite": out}, {"model.tflite": 1e-3}, LABELS
    )
    entry = {"file": "model_fp32.tflite", "bytes": len(model), "sha256": storage.sha256(model), "latency_ms": 0.1}
    manifest = publish.build_manifest(
        model_name="shelf_audit",
        default_variant="fp32",
        variants={"fp32": entry},
        labels=LABELS,
        gate_metrics={"overall": {"recall": 0.9}},
        lineage={"pipeline_run_id": "run-1"},
        image_shape=runtime.input_image_shape(model),
    )
    return files, manifest, golden


def _publish(bucket: str, model: bytes, now=T0) -> publish.PublishResult:
    files, manifest, golden = _payload(model)
    return publish.publish(bucket, "shelf_audit", files, manifest, golden=golden, now=now)


def test_publish_writes_the_bucket_contract(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    result = _publish(bucket, models["a"])
    assert result.created and result.version == f"20261125T120102Z-{storage.sha256(models['a'])[:6]}"
    folder = tmp_path / "bucket" / "shelf_audit" / "versions" / result.version
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == [
        "golden/golden.json",
        "golden/input_000.u8",
        "golden/input_001.u8",
        "golden/input_002.u8",
        "golden/input_003.u8",
        "labels.txt",
        "manifest.json",
        "model.tflite",
        "model_fp32.tflite",
    ]
    assert (tmp_path / "bucket" / "shelf_audit" / "LATEST").read_text().strip() == result.version
    assert not list((tmp_path / "bucket" / "shelf_audit" / ".staging").glob("*"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema_version"] == publish.SCHEMA_VERSION and manifest["version"] == result.version
    assert manifest["created"] == "2026-11-25T12:01:02+00:00" and manifest["labels"] == list(LABELS)
    assert manifest["files"]["model.tflite"]["sha256"] == storage.sha256(models["a"])
    assert manifest["default_variant"] == "fp32" and manifest["gate_metrics"]["overall"]["recall"] == 0.9
    assert len((folder / "golden" / "input_000.u8").read_bytes()) == 128 * 128
    assert versions.list_versions(bucket, "shelf_audit") == [result.version]
    assert verify.verify_version(bucket, "shelf_audit").ok
    assert [h["action"] for h in bucket_history.read_history(bucket, "shelf_audit")] == ["publish"]


def test_same_model_twice_is_a_noop(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    first = _publish(bucket, models["a"])
    again = _publish(bucket, models["a"], now=T0 + datetime.timedelta(hours=1))
    assert not again.created and again.version == first.version and "already published" in again.message
    assert versions.list_versions(bucket, "shelf_audit") == [first.version]
    assert len(bucket_history.read_history(bucket, "shelf_audit")) == 1


def test_crash_mid_publish_leaves_latest_and_versions_alone(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    first = _publish(bucket, models["a"])
    real_create = storage.create
    calls = []

    def flaky_create(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("simulated crash while copying")
        return real_create(path, data)

    # A killed process does not clean up either: keep the partial folder.
    with (
        mock.patch.object(storage, "create", side_effect=flaky_create),
        mock.patch.object(storage, "remove_quietly"),
        pytest.raises(OSError, match="simulated crash"),
    ):
        _publish(bucket, models["b"], now=T0 + datetime.timedelta(minutes=5))
    partial = layout.version_dir(
        bucket, "shelf_audit", versions.make_version(storage.sha256(models["b"]), T0 + datetime.timedelta(minutes=5))
    )
    assert tf.io.gfile.isdir(partial)  # files are there, but no manifest: not a version
    assert versions.read_latest(bucket, "shelf_audit") == first.version
    assert versions.list_versions(bucket, "shelf_audit") == [first.version]
    with pytest.raises(layout.BucketError):
        versions.read_manifest(bucket, "shelf_audit", partial.rsplit("/", 1)[-1])
    # The next publish of that model replaces the leftover and completes.
    retry = _publish(bucket, models["b"], now=T0 + datetime.timedelta(minutes=5))
    assert retry.created and versions.list_versions(bucket, "shelf_audit") == [first.version, retry.version]
    assert verify.verify_version(bucket, "shelf_audit", retry.version).ok


def test_failed_checksum_before_visibility_publishes_nothing(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    with mock.patch.object(publish, "_check_files", side_effect=layout.BucketError("checksum mismatch")):
        with pytest.raises(layout.BucketError):
            _publish(bucket, models["a"])
    assert versions.read_latest(bucket, "shelf_audit") is None and versions.list_versions(bucket, "shelf_audit") == []
    assert not tf.io.gfile.exists(
        f"{bucket}/shelf_audit/versions/{versions.make_version(storage.sha256(models['a']), T0)}"
    )


def test_rollback_moves_latest_and_appends_history(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    first = _publish(bucket, models["a"])
    second = _publish(bucket, models["b"], now=T0 + datetime.timedelta(days=1))
    assert versions.read_latest(bucket, "shelf_audit") == second.version
    previous = publish.rollback(bucket, "shelf_audit", first.version, reason="bad field reports")
    assert previous == second.version and versions.read_latest(bucket, "shelf_audit") == first.version
    history = bucket_history.read_history(bucket, "shelf_audit")
    assert [h["action"] for h in history] == ["publish", "publish", "rollback"]
    assert history[-1]["previous"] == second.version and history[-1]["reason"] == "bad field reports"
    with pytest.raises(layout.BucketError, match="no complete version"):
        publish.rollback(bucket, "shelf_audit", "20000101T000000Z-abcdef")
    assert versions.read_latest(bucket, "shelf_audit") == first.version


def test_verify_names_the_corrupt_file(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    result = _publish(bucket, models["a"])
    (tmp_path / "bucket" / "shelf_audit" / "versions" / result.version / "model_fp32.tflite").write_bytes(b"junk")
    report = verify.verify_version(bucket, "shelf_audit")
    assert not report.ok and report.problems[0].startswith("model_fp32.tflite: checksum mismatch")
    with pytest.raises(layout.BucketError, match="corrupt"):
        publish.rollback(bucket, "shelf_audit", result.version)


def test_verify_detects_a_model_that_no_longer_matches_its_golden_outputs(tmp_path, models):
    bucket = str(tmp_path / "bucket")
    files, manifest, golden = _payload(models["a"])
    index = json.loads(golden["golden.json"])
    for sample in index["samples"]:
        sample["expected"]["model.tflite"] = [1.0, 0.0, 0.0]
    golden["golden.json"] = json.dumps(index).encode()
    publish.publish(bucket, "shelf_audit", files, manifest, golden=golden, now=T0)
    report = verify.verify_version(bucket, "shelf_audit")
    assert [p.split(":")[0] for p in report.problems] == ["model.tflite"]


def test_memory_bucket_works_like_a_folder(models):
    bucket = f"memory://bucket-{uuid.uuid4().hex}"
    first = _publish(bucket, models["a"])
    second = _publish(bucket, models["b"], now=T0 + datetime.timedelta(seconds=1))
    assert versions.list_versions(bucket, "shelf_audit") == [first.version, second.version]
    assert versions.read_manifest(bucket, "shelf_audit")["version"] == second.version
    assert verify.verify_version(bucket, "shelf_audit").ok
    publish.rollback(bucket, "shelf_audit", first.version)
    assert versions.read_latest(bucket, "shelf_audit") == first.version
    assert len(bucket_history.read_history(bucket, "shelf_audit")) == 3


def test_bad_names_are_refused(tmp_path, models):
    files, manifest, _ = _payload(models["a"])
    with pytest.raises(ValueError, match="model.tflite"):
        publish.publish(str(tmp_path), "shelf_audit", {"labels.txt": b""}, manifest)
    with pytest.raises(ValueError, match="invalid file name"):
        publish.publish(str(tmp_path), "shelf_audit", {**files, "../x": b""}, manifest)
    with pytest.raises(ValueError, match="model_name"):
        layout.model_root(str(tmp_path), "../up")
    assert np.array_equal(versions.list_versions(str(tmp_path), "shelf_audit"), [])


def _fake_manifest(**extra) -> dict:
    """The manifest of a fake model: one fp32 variant in model.tflite, no gate metrics, no lineage."""
    return publish.build_manifest(
        model_name="shelf_audit",
        default_variant="fp32",
        variants={"fp32": {"file": "model.tflite"}},
        labels=LABELS,
        gate_metrics={},
        lineage={},
        image_shape=(8, 8, 1),
        **extra,
    )


def _fake(bucket: str, tag: str = "x", now=T0, **kwargs) -> publish.PublishResult:
    """A publish of fake model bytes (the bucket never parses them)."""
    return publish.publish(
        bucket,
        "shelf_audit",
        {"model.tflite": tag.encode(), "labels.txt": b"ok\n"},
        _fake_manifest(),
        now=now,
        **kwargs,
    )


@pytest.mark.parametrize("name", ["", "..", ".", "../up", "a/b", "/abs", ".hidden", "a\\b", "gs://x", "a\x00b"])
def test_model_names_and_versions_cannot_escape_the_bucket(tmp_path, name):
    bucket = str(tmp_path / "bucket")
    _fake(bucket)
    with pytest.raises(ValueError):
        layout.model_root(bucket, name)
    with pytest.raises(ValueError):
        layout.version_dir(bucket, "shelf_audit", name)
    with pytest.raises(ValueError):
        versions.read_manifest(bucket, "shelf_audit", name or "..")
    with pytest.raises(ValueError):
        publish.rollback(bucket, "shelf_audit", name or "..")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket"]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "", "golden/..", "manifest.json", "manifest.sig"])
def test_file_names_cannot_escape_the_version(tmp_path, name):
    with pytest.raises(ValueError, match="invalid file name"):
        _fake(str(tmp_path / "bucket"), extra_files={name: b"x"})
    assert versions.list_versions(str(tmp_path / "bucket"), "shelf_audit") == []


def test_a_latest_naming_a_traversal_is_refused(tmp_path):
    bucket = str(tmp_path / "bucket")
    _fake(bucket)
    (tmp_path / "bucket" / "shelf_audit" / "LATEST").write_text("../../../etc\n")
    with pytest.raises(ValueError, match="version must be a plain name"):
        versions.read_manifest(bucket, "shelf_audit")


def test_extra_files_are_in_the_manifest_and_verified(tmp_path):
    bucket = str(tmp_path / "bucket")
    result = _fake(bucket, extra_files={"report.html": b"<html>report</html>"})
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert manifest["files"]["report.html"] == {"bytes": 19, "sha256": storage.sha256(b"<html>report</html>")}
    assert verify.verify_version(bucket, "shelf_audit", run_models=False).ok
    (tmp_path / "bucket" / "shelf_audit" / "versions" / result.version / "report.html").write_text("<html>x</html>")
    assert verify.verify_version(bucket, "shelf_audit", run_models=False).problems == (
        f"report.html: checksum mismatch (expected sha256 {storage.sha256(b'<html>report</html>')[:12]}...)",
    )
    with pytest.raises(ValueError, match="clashes"):
        _fake(bucket, "y", extra_files={"labels.txt": b""})


def test_extra_manifest_keys_are_kept(tmp_path):
    bucket = str(tmp_path / "bucket")
    files, manifest = {"model.tflite": b"m"}, _fake_manifest(extra={"data_quality": {"bad_records": 0}})
    publish.publish(bucket, "shelf_audit", files, manifest, now=T0)
    assert versions.read_manifest(bucket, "shelf_audit")["data_quality"] == {"bad_records": 0}


def test_a_byte_flipped_in_an_unsigned_manifest_fails_verify(tmp_path):
    bucket = str(tmp_path / "bucket")
    result = _fake(bucket)
    path = tmp_path / "bucket" / "shelf_audit" / "versions" / result.version / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"fp32"', b'"fp33"', 1))
    report = verify.verify_version(bucket, "shelf_audit", run_models=False)
    assert not report.ok and report.problems[0].startswith("manifest.json: sha256 differs from the one recorded")


def test_a_truncated_manifest_names_its_version(tmp_path):
    bucket = str(tmp_path / "bucket")
    result = _fake(bucket)
    path = tmp_path / "bucket" / "shelf_audit" / "versions" / result.version / "manifest.json"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(layout.BucketError, match=f"version {result.version}: .*manifest.json is not valid JSON"):
        versions.read_manifest(bucket, "shelf_audit", result.version)


def test_legacy_single_file_history_is_still_read(tmp_path):
    bucket = str(tmp_path / "bucket")
    first = _fake(bucket, "a")
    root = tmp_path / "bucket" / "shelf_audit"
    # A bucket written before the event log: its history in history.jsonl, no history/ folder.
    for event in (root / "history").iterdir():
        event.unlink()
    (root / "history").rmdir()
    line = {"action": "publish", "version": first.version, "previous": None, "time": "2026-11-25T12:01:02+00:00"}
    (root / "history.jsonl").write_text(json.dumps(line) + "\n")
    second = _fake(bucket, "b", now=T0 + datetime.timedelta(hours=1))
    assert [(h["action"], h["version"]) for h in bucket_history.read_history(bucket, "shelf_audit")] == [
        ("publish", first.version),
        ("publish", second.version),
    ]
    assert versions.read_latest(bucket, "shelf_audit") == second.version
    publish.rollback(bucket, "shelf_audit", first.version)
    assert versions.read_latest(bucket, "shelf_audit") == first.version
    assert (root / "history.jsonl").read_text() == json.dumps(line) + "\n"  # never rewritten


def test_probe_writable(tmp_path):
    bucket = tmp_path / "new" / "bucket"
    storage.probe_writable(str(bucket))  # created, like publish does
    assert bucket.is_dir() and list(bucket.iterdir()) == []  # the probe object is gone
    with pytest.raises(layout.BucketError, match="bucket /proc/nope is not writable: "):
        storage.probe_writable("/proc/nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(layout.BucketError, match=f"bucket {tmp_path}/file/b is not writable"):
        storage.probe_writable(str(tmp_path / "file" / "b"))
    with pytest.raises(layout.BucketError, match="bucket '' is not writable"):
        storage.probe_writable("")
    storage.probe_writable(f"memory://probe-{uuid.uuid4().hex}")


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_second_create_of_a_version_file_is_refused(tmp_path, models, kind):
    bucket = str(tmp_path / "bucket") if kind == "local" else f"memory://create-{uuid.uuid4().hex}"
    result = _publish(bucket, models["a"])
    path = layout.join(result.path, "model.tflite")
    with pytest.raises(layout.BucketError, match=f"^{path} already exists: not overwritten$"):
        storage.create(path, b"another model")
    assert storage.read(path) == models["a"] and verify.verify_version(bucket, "shelf_audit").ok
    assert [n for n in storage.listdir(result.path) if layout.TMP_MARK in n] == []
