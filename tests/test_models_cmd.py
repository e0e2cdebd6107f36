"""Tests of ``shelf-audit models list|show|verify|rollback``."""

from __future__ import annotations

import datetime
import json

import pytest
import tflite_helpers as helpers

from components import model_bucket as mb
from components import tflite_convert as tc
from shelf_audit import cli
from shelf_data.contract import LABELS

pytestmark = pytest.mark.component

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> tuple[str, list[str]]:
    """A bucket with two published versions (the second is LATEST)."""
    root = tmp_path_factory.mktemp("cmd")
    versions = []
    for i, shift in enumerate((0.0, 0.5)):
        model = tc.convert(helpers.build_tiny_saved_model(str(root / f"m{i}"), bias_shift=shift), "fp32")
        images, labels = helpers.make_images(3)
        out = tc.run_tflite(model, images)
        golden = mb.build_golden(images, labels, out, {"model.tflite": out}, {"model.tflite": 1e-3}, LABELS)
        manifest = mb.build_manifest(
            model_name="shelf_audit",
            default_variant="fp32",
            variants={"fp32": {"file": "model.tflite", "bytes": len(model), "latency_ms": 0.25}},
            labels=LABELS,
            gate_metrics={"overall": {"weighted_recall": 0.9}, "per_class": {"damaged": {"recall": 0.8}}},
            lineage={},
            image_shape=tc.input_image_shape(model),
        )
        files = {"model.tflite": model, "labels.txt": b"ok\nmisplaced\ndamaged\n"}
        result = mb.publish(
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
    assert mb.read_latest(path, "shelf_audit") == versions[0]
    assert f"{versions[1]} -> {versions[0]}" in capsys.readouterr().out
    assert mb.read_history(path, "shelf_audit")[-1]["reason"] == "field bug"
    # Nothing older left: a clear error, LATEST untouched.
    assert cli.main(["models", "rollback", "--bucket", path]) == 1
    assert mb.read_latest(path, "shelf_audit") == versions[0]
    assert cli.main(["models", "rollback", "--bucket", path, versions[1]]) == 0
    assert mb.read_latest(path, "shelf_audit") == versions[1]


def test_empty_bucket(tmp_path, capsys):
    assert cli.main(["models", "list", "--bucket", str(tmp_path)]) == 0
    assert "no versions" in capsys.readouterr().out
    assert cli.main(["models", "verify", "--bucket", str(tmp_path)]) == 1
