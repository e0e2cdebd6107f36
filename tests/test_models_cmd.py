"""Tests of ``shelf-audit models list|show|verify|rollback|clean``."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest
from support import cli_helpers
from support import tflite_helpers as helpers

from bucket import history, publish
from bucket import versions as bucket_versions
from shelf_audit import cli
from shelf_data.contract import LABELS
from shelf_tflite import build, runtime

pytestmark = pytest.mark.component

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> tuple[str, list[str]]:
    """A bucket with two published versions (the second is LATEST)."""
    root = tmp_path_factory.mktemp("cmd")
    versions = []
    for i, shift in enumerate((0.0, 0.5)):
        model = build.convert(helpers.build_tiny_saved_model(str(root / f"m{i}"), bias_shift=shift), "fp32")
        images, labels = helpers.make_images(3)
        out = runtime.run_tflite(model, images)
        golden = publish.build_golden(images, labels, out, {"model.tflite": out}, {"model.tflite": 1e-3}, LABELS)
        manifest = publish.build_manifest(
            model_name="shelf_audit",
            default_variant="fp32",
            variants={"fp32": {"file": "model.tflite", "bytes": len(model), "latency_ms": 0.25}},
            labels=LABELS,
            gate_metrics={"overall": {"weighted_recall": 0.9}, "per_class": {"damaged": {"recall": 0.8}}},
            lineage={},
            image_shape=runtime.input_image_shape(model),
        )
        files = {"model.tflite": model, "labels.txt": b"ok\nmisplaced\ndamaged\n"}
        result = publish.publish(
            str(root / "b"), "shelf_audit", files, manifest, golden, now=T0 + datetime.timedelta(days=i)
        )
        versions.append(result.version)
    return str(root / "b"), versions


def _copy(src: str, dst) -> str:
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_list_shows_versions_metrics_and_latest(bucket, capsys):
    path, versions = bucket
    assert cli.main(["models", "list", "--bucket", path]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("*", " "))]
    assert versions[1] in lines[-1] and lines[-1].startswith("*")
    assert "weighted_recall=0.900" in out and "damaged.recall=0.800" in out and "fp32" in out


def test_show_prints_the_manifest(bucket, capsys):
    path, versions = bucket
    assert cli.main(["models", "show", "--bucket", path, versions[0]]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == versions[0]
    assert cli.main(["models", "show", "--bucket", path, "20000101T000000Z-000000"]) == 1
    assert "no complete version" in capsys.readouterr().err


def test_verify_ok_and_names_a_broken_file(bucket, tmp_path, capsys):
    path, versions = bucket
    assert cli.main(["models", "verify", "--bucket", path]) == 0
    assert capsys.readouterr().out.startswith(f"ok {versions[1]}")
    broken = _copy(path, tmp_path / "broken")
    with open(f"{broken}/shelf_audit/versions/{versions[1]}/model.tflite", "wb") as f:
        f.write(b"not a model")
    assert cli.main(["models", "verify", "--bucket", broken]) == 1
    assert "model.tflite: checksum mismatch" in capsys.readouterr().err


def test_rollback_defaults_to_the_previous_version(bucket, tmp_path, capsys):
    path = _copy(bucket[0], tmp_path / "rb")
    versions = bucket[1]
    assert cli.main(["models", "rollback", "--bucket", path, "--reason", "field bug"]) == 0
    assert bucket_versions.read_latest(path, "shelf_audit") == versions[0]
    assert f"{versions[1]} -> {versions[0]}" in capsys.readouterr().out
    assert history.read_history(path, "shelf_audit")[-1]["reason"] == "field bug"
    # Nothing older left: a clear error, LATEST untouched.
    assert cli.main(["models", "rollback", "--bucket", path]) == 1
    assert bucket_versions.read_latest(path, "shelf_audit") == versions[0]
    assert cli.main(["models", "rollback", "--bucket", path, versions[1]]) == 0
    assert bucket_versions.read_latest(path, "shelf_audit") == versions[1]


def test_empty_bucket(tmp_path, capsys):
    assert cli.main(["models", "list", "--bucket", str(tmp_path)]) == 0
    assert "no versions" in capsys.readouterr().out
    assert cli.main(["models", "verify", "--bucket", str(tmp_path)]) == 1


def test_list_names_a_broken_version_and_lists_the_rest(bucket, tmp_path, capsys):
    path = _copy(bucket[0], tmp_path / "trunc")
    versions = bucket[1]
    manifest = tmp_path / "trunc" / "shelf_audit" / "versions" / versions[0] / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:70])  # truncated mid-string
    assert cli.main(["models", "list", "--bucket", path]) == 1
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if versions[0] in line)
    assert "broken: " in row and "is not valid JSON" in row
    assert f"version {versions[0]} is broken" in err
    assert any(versions[1] in line and line.startswith("*") and "fp32" in line for line in out.splitlines())


def test_list_fails_on_a_bucket_that_does_not_exist(tmp_path, capsys):
    assert cli.main(["models", "list", "--bucket", str(tmp_path / "nope")]) == 1
    assert f"bucket {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_list_flags_a_dangling_latest(bucket, tmp_path, capsys):
    path = _copy(bucket[0], tmp_path / "dangling")
    (tmp_path / "dangling" / "shelf_audit" / "LATEST").write_text("20991231T000000Z-abcdef\n")
    assert cli.main(["models", "list", "--bucket", path]) == 1
    err = capsys.readouterr().err
    assert "LATEST of" in err and "names 20991231T000000Z-abcdef, which is not a complete" in err
    # A version folder without its manifest (a killed publish): listed as incomplete, LATEST on it flagged.
    partial = tmp_path / "dangling" / "shelf_audit" / "versions" / "20991231T000000Z-abcdef"
    partial.mkdir()
    (partial / "model.tflite").write_bytes(b"half")
    assert cli.main(["models", "list", "--bucket", path]) == 1
    out, err = capsys.readouterr()
    assert "incomplete: no manifest.json" in out and "not a complete" in err


def test_clean_removes_old_leftovers_and_settles_latest(bucket, tmp_path, capsys):
    path = _copy(bucket[0], tmp_path / "clean")
    root = tmp_path / "clean" / "shelf_audit"
    (root / ".staging" / "20200101T000000Z-abcdef-1600000000-0a0b0c").mkdir(parents=True)
    (root / "LATEST.tmp-1600000000-deadbeef").write_text("x")
    (root / "LATEST").write_text(bucket[1][0] + "\n")  # disagrees with the history: a killed writer
    assert cli.main(["models", "list", "--bucket", path]) == 0
    assert f"the history makes {bucket[1][1]} current" in capsys.readouterr().err
    assert cli.main(["models", "clean", "--bucket", path]) == 0
    assert "2 leftover(s) removed; LATEST: " + bucket[1][1] in capsys.readouterr().out
    assert list((root / ".staging").iterdir()) == [] and not (root / "LATEST.tmp-1600000000-deadbeef").exists()
    assert bucket_versions.read_latest(path, "shelf_audit") == bucket[1][1]


def test_list_show_and_verify_no_run_do_not_import_tensorflow(bucket):
    code = cli_helpers.READERS_WITHOUT_TENSORFLOW
    proc = subprocess.run([sys.executable, "-c", code, bucket[0]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
