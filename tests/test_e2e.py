"""Pipeline tier: a tiny end-to-end local run, asserted on ML Metadata and on the bucket.

A few hundred synthetic photos and a few training steps: the point is the
wiring (every stage runs, the gate decides, caching works, the bucket
follows its contract), not the model's quality. Runs go through the real
``shelf-audit run`` command in a subprocess, so exit statuses are tested too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from support import tiny
from tfx.orchestration import metadata

from bucket import verify
from bucket import versions as bucket_versions
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline, run_inputs
from shelf_data import synth

pytestmark = pytest.mark.e2e


def _run(tmp: Path, floor: float, *extra: str) -> subprocess.CompletedProcess:
    config = tiny.write_tiny_config(tmp / f"tiny-{floor}.toml", "tiny-e2e", {"gate.weighted_recall_floor": floor})
    args = ["run", "--config", config, *extra, "--data", tmp / "data", "--home", tmp / "home"]
    # GRPC_VERBOSITY unset, as a user's shell has it: another test in this worker may have set it.
    return tiny.run_cli(*args, unset=["GRPC_VERBOSITY"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs over one home: reachable gate, the same again (cache), an impossible gate."""
    tmp = tmp_path_factory.mktemp("e2e")
    synth.generate(str(tmp / "data"), span=1, count=200, seed=11)
    results = {}
    # The second run is forced: unforced, nothing new would stop it before the pipeline (tests/test_nothing_new.py).
    for name, floor, extra in (("first", 0.0, ()), ("second", 0.0, ("--force",)), ("impossible", 1.0, ())):
        proc = _run(tmp, floor, *extra)
        results[name] = (
            proc,
            tiny.summary(tmp / "home", "tiny-e2e") if (tmp / "home" / "metadata.sqlite").exists() else None,
        )
        results[name + "_bucket"] = sorted(bucket_versions.list_versions(str(tmp / "home" / "bucket"), "shelf_audit"))
    results["tmp"] = tmp
    return results


def test_first_run_executes_every_stage_and_blesses(runs):
    proc, summary = runs["first"]
    assert proc.returncode == 0, tiny.explain(proc)
    dag = create_pipeline(
        config_lib.PipelineConfig(), "root", run_inputs(config_lib.PipelineConfig(), "data", "bucket")
    )
    assert {s.node_id for s in summary.stages} == {c.id for c in dag.components}
    assert all(s.state == "COMPLETE" for s in summary.stages), [(s.node_id, s.state) for s in summary.stages]
    assert summary.blessed is True
    assert "verdict: BLESSED" in proc.stdout
    assert "weighted_macro_recall" in proc.stdout
    assert summary.pushed and summary.pushed["pushed"] == 1


def test_bucket_follows_the_contract(runs):
    bucket = str(runs["tmp"] / "home" / "bucket")
    versions = runs["first_bucket"]
    assert len(versions) == 1
    version = versions[0]
    assert bucket_versions.read_latest(bucket, "shelf_audit") == version
    folder = Path(bucket) / "shelf_audit" / "versions" / version
    names = {p.name for p in folder.iterdir()}
    assert {"model.tflite", "model_fp16.tflite", "model_int8.tflite", "labels.txt", "manifest.json", "golden"} <= names
    assert (folder / "labels.txt").read_text().split() == ["ok", "misplaced", "damaged"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == version and manifest["default_variant"] == "fp16"
    assert manifest["labels"] == ["ok", "misplaced", "damaged"]
    assert "weighted_macro_recall" in json.dumps(manifest["gate_metrics"])
    assert manifest["lineage"]["pipeline_name"] == "tiny-e2e"
    assert "uint8" in json.dumps(manifest["variants"]["int8"])
    assert verify.verify_version(bucket, "shelf_audit", version).ok
    # The published path is printed for the app team.
    assert str(folder / "model.tflite") in runs["first"][0].stdout


def test_second_run_reuses_the_cache_and_does_not_push_twice(runs):
    proc, summary = runs["second"]
    assert proc.returncode == 0, tiny.explain(proc)
    states = {s.node_id: s.state for s in summary.stages}
    for node in ("ImportExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert states[node] == "CACHED", states
    assert runs["second_bucket"] == runs["first_bucket"]


def test_impossible_gate_is_not_blessed_and_publishes_nothing(runs):
    proc, summary = runs["impossible"]
    assert proc.returncode == 3, tiny.explain(proc)
    assert summary.blessed is False
    assert "NOT blessed" in proc.stdout and "weighted_macro_recall" in proc.stdout
    assert summary.pushed is not None and summary.pushed["pushed"] == 0
    assert runs["impossible_bucket"] == runs["first_bucket"]


def test_metadata_store_is_readable_after_all_runs(runs):
    from tfx import v1 as tfx

    from components.trainer import Trainer

    path = str(runs["tmp"] / "home" / "metadata.sqlite")
    with metadata.Metadata(tfx.orchestration.metadata.sqlite_metadata_connection_config(path)) as m:
        trainers = m.store.get_executions_by_type(f"{Trainer.__module__}.{Trainer.__name__}")
    # One real Trainer execution; the later runs reused it from the cache.
    assert sum(1 for e in trainers if e.last_known_state == e.COMPLETE) == 1


def test_bad_data_stops_the_run_before_transform(tmp_path):
    """Records outside the schema: exit 1, the anomaly named, Transform never runs, the bucket untouched.

    The images are valid: unusable images are dropped by ExampleGen (tests/test_bad_data_e2e.py).
    """
    from shelf_data.contract import PhotoRecord, ShardedWriter

    good = synth.generate(str(tmp_path / "data"), span=1, count=40, seed=3)
    assert good.count == 40
    # Span 2 (the latest) holds photos whose label is outside 0..2; written
    # past PhotoRecord.validate on purpose, as a foreign producer might.
    image = next(synth.iter_photos(1, seed=3, span=2)).image
    bad = [PhotoRecord(image=image, label=7, lane_id=3, device_id="zebra-tc52")] * 20
    with mock.patch.object(PhotoRecord, "validate"), ShardedWriter(str(tmp_path / "data"), 2, 1) as writer:
        writer.write_all(bad)
    proc = _run(tmp_path, 0.0)
    assert proc.returncode == 1, tiny.explain(proc)
    assert "label" in proc.stderr and "schemas/schema.pbtxt" in proc.stderr, tiny.explain(proc)
    summary = tiny.summary(tmp_path / "home", "tiny-e2e")
    assert summary.stage("Transform") is None and summary.stage("Trainer") is None
    assert not (tmp_path / "home" / "bucket").exists() or not bucket_versions.list_versions(
        str(tmp_path / "home" / "bucket"), "shelf_audit"
    )


def _photo_digests(split_dir: Path) -> set[str]:
    """sha256 of every photo (``image/encoded``) in one ExampleGen split folder."""
    import hashlib

    import tensorflow as tf

    from shelf_model.features import compression_type

    digests = set()
    for path in sorted(split_dir.iterdir()):
        for record in tf.data.TFRecordDataset(str(path), compression_type=compression_type([path.name])):
            example = tf.train.Example.FromString(record.numpy())
            digests.add(hashlib.sha256(example.features.feature["image/encoded"].bytes_list.value[0]).hexdigest())
    return digests


def test_the_gate_sees_photos_the_trainer_never_looked_at(runs):
    """Three splits: the Trainer fits on train and watches validation; the Evaluator gates on eval alone."""
    from tfx import v1 as tfx

    _, summary = runs["first"]
    examples = Path(summary.examples[0]["uri"])
    by_split = {split: _photo_digests(examples / f"Split-{split}") for split in ("train", "validation", "eval")}
    assert all(by_split.values()), {k: len(v) for k, v in by_split.items()}
    assert not by_split["validation"] & by_split["eval"]
    assert not by_split["train"] & (by_split["validation"] | by_split["eval"])
    # What each component was told to read, as ML Metadata recorded it.
    path = str(runs["tmp"] / "home" / "metadata.sqlite")
    with metadata.Metadata(tfx.orchestration.metadata.sqlite_metadata_connection_config(path)) as m:
        trainer = next(s for s in summary.stages if s.node_id == "Trainer")
        evaluator = next(s for s in summary.stages if s.node_id == "Evaluator")
        props = {
            e.id: e.custom_properties
            for e in m.store.get_executions_by_id([trainer.execution_id, evaluator.execution_id])
        }
    assert json.loads(props[trainer.execution_id]["train_args"].string_value)["splits"] == ["train"]
    assert json.loads(props[trainer.execution_id]["eval_args"].string_value)["splits"] == ["validation"]
    assert json.loads(props[evaluator.execution_id]["example_splits"].string_value) == ["eval"]


def test_example_gen_and_transform_write_plain_tfrecords_with_every_photo_of_each_split(runs):
    """Neither writes GZIP (components.example_gen.executor, components.transform); Transform keeps every photo."""
    import tensorflow as tf

    _, summary = runs["first"]
    examples = Path(summary.examples[0]["uri"])
    for split in ("train", "validation", "eval"):
        names = [f.name for f in (examples / f"Split-{split}").iterdir()]
        assert names and all(re.fullmatch(r"data_tfrecord-\d{5}-of-\d{5}\.tfrecord", n) for n in names), names
    transformed = sorted((runs["tmp"] / "home" / "pipeline_root" / "Transform" / "transformed_examples").iterdir())
    assert len(transformed) == 1  # the second run reused it from the cache
    for split in ("train", "validation", "eval"):
        files = sorted((transformed[0] / f"Split-{split}").iterdir())
        assert files and all(re.fullmatch(r"transformed_examples-\d{5}-of-\d{5}\.tfrecord", f.name) for f in files)
        count = sum(1 for _ in tf.data.TFRecordDataset([str(f) for f in files], compression_type=""))
        assert count == len(_photo_digests(examples / f"Split-{split}")), split


def test_splits_and_seed_are_recorded_in_the_manifest_and_the_summary(runs):
    bucket = runs["tmp"] / "home" / "bucket" / "shelf_audit" / "versions" / runs["first_bucket"][0]
    splits = json.loads((bucket / "manifest.json").read_text())["splits"]
    assert splits["hash_buckets"] == {"train": 8, "validation": 1, "eval": 1}
    assert splits["training_seed"] == config_lib.TrainingConfig().seed
    counts = splits["counts"]
    assert set(counts) == {"train", "validation", "eval"}
    assert sum(c["examples"] for c in counts.values()) == 200
    for c in counts.values():
        assert c["examples"] == c["ok"] + c["misplaced"] + c["damaged"]
    assert counts["train"]["examples"] > counts["eval"]["examples"] > 0
    assert "splits (deterministic hash of each photo" in runs["first"][0].stdout


# Our lines: a timestamped record from one of the project's loggers, or TFX's stage lines (logger absl).
OUR_LOGGERS = "shelf_audit|shelf_model|shelf_data|shelf_tflite|components|pipeline|bucket|report|absl"
OUR_LINE = re.compile(rf"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ({OUR_LOGGERS})[.:]")
# A tiny run: two dozen stage lines, a few progress and heartbeat lines, the converter's and publish lines.
MAX_RUN_STDERR_LINES = 60


def _not_ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not OUR_LINE.match(line)]


def test_a_tiny_run_prints_only_our_lines_on_stderr(runs):
    proc, _ = runs["first"]
    assert proc.returncode == 0, tiny.explain(proc)
    assert _not_ours(proc.stderr) == [], "third-party lines on stderr:\n" + "\n".join(_not_ours(proc.stderr))
    lines = proc.stderr.splitlines()
    assert len(lines) <= MAX_RUN_STDERR_LINES, f"{len(lines)} stderr lines:\n" + proc.stderr
    assert any("Component Trainer is running" in line for line in lines)
    assert any(re.search(r"shelf_model\.trainer: epoch 1/1: loss", line) for line in lines)


def test_models_list_prints_nothing_on_stderr_and_needs_no_tensorflow(runs):
    bucket = str(runs["tmp"] / "home" / "bucket")
    cmd = [sys.executable, "-X", "importtime", "-m", "shelf_audit.cli", "models", "list", "--bucket", bucket]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, tiny.explain(proc)
    assert runs["first_bucket"][0] in proc.stdout
    imported = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert imported and not any(re.search(r"\|\s+tensorflow(\.|$)", line) for line in imported)
    others = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert others == [], others
