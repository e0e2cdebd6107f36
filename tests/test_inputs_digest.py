"""Unit tests of the inputs digest (pipeline/inputs_digest.py) and of `shelf-audit run` stopping when nothing is new."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest

from pipeline import config as config_lib
from pipeline import inputs_digest as digest_lib
from pipeline import pipeline as pipeline_lib
from shelf_data import spans as spans_lib
from shelf_data import window

pytestmark = pytest.mark.unit

MTIME = 1_764_000_000  # fixed file times: TFX's fingerprint hashes mtimes


def _write(path: Path, data: bytes, mtime: int = MTIME) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def _spans(base: Path, *spans: int) -> Path:
    for span in spans:
        _write(base / f"span-{span}" / "data-00000-of-00001.tfrecord.gz", b"x" * (100 + span))
    return base


def _config(base: Path, **sections) -> config_lib.PipelineConfig:
    config = config_lib.PipelineConfig()
    data = dataclasses.replace(config.data, input_base=str(base))
    return config.replace(data=data, **sections)


def _digest(config: config_lib.PipelineConfig, code: str = "code-1") -> digest_lib.InputsDigest:
    inputs = pipeline_lib.run_inputs(config, config.data.input_base, "unused-bucket")
    return digest_lib.compute(config, inputs.resolution, code)


def _select(base: Path, range_config: str) -> tuple[digest_lib.SpanInput, ...]:
    """The spans the digest records for ``range_config`` (RangeConfig JSON, "" = latest) under ``base``."""
    resolution = window.resolve(str(base), window.input_config(), spans_lib.from_value(range_config))
    return digest_lib.compute(config_lib.PipelineConfig(), resolution, "code-1").spans


def _example_gen_resolves(base: Path, range_config: str) -> dict:
    """What ImportExampleGen's own driver resolves for the pipeline's split and ``range_config``."""
    from tfx.components.example_gen import driver
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    split = example_gen_pb2.Input.Split(name=pipeline_lib.SPLIT_NAME, pattern=pipeline_lib.SPLIT_PATTERN)
    props = {
        "input_base": str(base),
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(splits=[split])),
        "range_config": range_config,
    }
    return driver.FileBasedDriver(mock.Mock()).resolve_exec_properties(props, None, None)


@pytest.mark.parametrize("range_config", ["", '{"static_range": {"start_span_number": 1, "end_span_number": 1}}'])
def test_fingerprint_is_the_one_import_example_gen_computes(tmp_path, range_config):
    base = _spans(tmp_path / "data", 1, 2)
    _write(base / "span-2" / "data-extra.tfrecord.gz", b"more")
    spans = _select(base, range_config)
    resolved = _example_gen_resolves(base, range_config)
    assert [(s.span, s.version, s.input_fingerprint) for s in spans] == [
        (resolved["span"], resolved["version"], resolved["input_fingerprint"])
    ]
    assert spans[0].span == (1 if range_config else 2)
    assert f"num_files:{1 if range_config else 2}" in spans[0].input_fingerprint


def test_digest_is_stable_and_ignores_where_things_live(tmp_path):
    base = _spans(tmp_path / "data", 1)
    config = _config(base)
    first = _digest(config)
    assert _digest(config) == first
    assert first.span_numbers == [1] and len(first.digest) == 64
    # Same photos elsewhere (copy2 keeps the mtimes), another bucket, beam args, pod sizes, pipeline name.
    moved = Path(shutil.copytree(base, tmp_path / "elsewhere"))
    elsewhere = dataclasses.replace(_config(moved), name="other-name", beam_args=("--direct_num_workers=2",)).replace(
        push=dataclasses.replace(config.push, bucket="gs://other", model_name="other_model"),
        kubeflow=dataclasses.replace(config.kubeflow, cpu=8.0),
        training=dataclasses.replace(config.training, cache="disk", cache_memory_limit_mb=64, cache_dir="/scratch"),
    )
    assert _digest(elsewhere).digest == first.digest


def test_digest_changes_with_a_new_span_and_a_new_file(tmp_path):
    base = _spans(tmp_path / "data", 1)
    config = _config(base)
    one = _digest(config)
    _spans(base, 2)
    two = _digest(config)
    assert two.span_numbers == [2] and two.digest != one.digest
    _write(base / "span-2" / "data-late.tfrecord.gz", b"late photos")
    assert _digest(config).digest not in (one.digest, two.digest)
    # Pinned to span 1, span 1's files decide: the new span changes nothing.
    pinned = dataclasses.replace(config.data, spans="1")
    before = _digest(config.replace(data=pinned))
    _spans(base, 3)
    assert _digest(config.replace(data=pinned)) == before


@pytest.mark.parametrize(
    "section, field, value",
    [
        ("training", "epochs", 3),
        ("training", "learning_rate", 0.01),
        ("data", "train_buckets", 9),
        ("gate", "weighted_recall_floor", 0.5),
        ("gate", "class_recall_floors", {"damaged": 0.5}),
        ("push", "size_budget_mb", 9.0),
        ("push", "variants", ("fp16",)),
        ("drift", "stop_on_drift", True),
    ],
)
def test_digest_changes_with_a_setting_that_changes_the_model_or_the_gate(tmp_path, section, field, value):
    config = _config(_spans(tmp_path / "data", 1))
    changed = config.replace(**{section: dataclasses.replace(getattr(config, section), **{field: value})})
    assert _digest(changed).digest != _digest(config).digest


def test_digest_changes_with_the_code_fingerprint(tmp_path):
    config = _config(_spans(tmp_path / "data", 1))
    assert _digest(config, code="code-2").digest != _digest(config, code="code-1").digest
    # The pipeline's own entry point uses code_fingerprint().
    with mock.patch.object(pipeline_lib, "code_fingerprint", return_value="code-1"):
        via_pipeline = pipeline_lib.inputs_digest(config, pipeline_lib.run_inputs(config, str(tmp_path / "data"), "b"))
    assert via_pipeline == _digest(config, code="code-1")


def test_a_window_of_spans_fingerprints_each_span_like_example_gen(tmp_path):
    base = _spans(tmp_path / "data", 1, 2, 4)
    rolling = json.dumps({"rolling_range": {"num_spans": 2}})
    static = json.dumps({"static_range": {"start_span_number": 1, "end_span_number": 3}})
    assert [s.span for s in _select(base, rolling)] == [2, 4]
    chosen = _select(base, static)
    assert [s.span for s in chosen] == [1, 2]
    for entry in chosen:
        single = json.dumps({"static_range": {"start_span_number": entry.span, "end_span_number": entry.span}})
        assert entry.input_fingerprint == _example_gen_resolves(base, single)["input_fingerprint"]


def test_no_matching_span_is_an_error_naming_the_pattern(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"nothing matches .*span-\{SPAN\}/\*\.tfrecord\*"):
        _select(tmp_path / "empty", "")
    static = json.dumps({"static_range": {"start_span_number": 5, "end_span_number": 6}})
    with pytest.raises(ValueError, match=r"spans present: 1\b"):
        _select(_spans(tmp_path / "data", 1), static)


# --- Finding a published version with the digest -------------------------------------------------------


def _publish(bucket: Path, version: str, digest: str | None, latest: bool = False, spans=(1,)) -> None:
    """A version as readers see it: versions/<v>/manifest.json (and LATEST). No model files needed here."""
    folder = bucket / "shelf_audit" / "versions" / version
    folder.mkdir(parents=True)
    lineage = {"inputs_digest": digest, "spans": list(spans)}
    (folder / "manifest.json").write_text(json.dumps({"version": version, "lineage": lineage}))
    if latest:
        (bucket / "shelf_audit" / "LATEST").write_text(version)


def test_find_published_reads_latest_first_then_the_others(tmp_path):
    from bucket import versions

    bucket = tmp_path / "bucket"
    _publish(bucket, "20260101T000000Z-aaaaaa", "a" * 64)
    _publish(bucket, "20260102T000000Z-bbbbbb", "b" * 64, latest=True)
    _publish(bucket, "20260103T000000Z-cccccc", None)
    with mock.patch.object(versions, "read_manifest", wraps=versions.read_manifest) as read:
        found = digest_lib.find_published(str(bucket), "shelf_audit", "b" * 64)
    assert found[0] == "20260102T000000Z-bbbbbb" and read.call_count == 1
    assert digest_lib.find_published(str(bucket), "shelf_audit", "a" * 64)[0] == "20260101T000000Z-aaaaaa"
    assert digest_lib.find_published(str(bucket), "shelf_audit", "f" * 64) is None
    assert digest_lib.find_published(str(tmp_path / "no-bucket"), "shelf_audit", "a" * 64) is None


# --- `shelf-audit run`: nothing new, --force ----------------------------------------------------------


@pytest.fixture
def unchanged(tmp_path) -> tuple[config_lib.PipelineConfig, str]:
    """A config over span 1 and a home whose bucket already holds a version with this run's digest."""
    base = _spans(tmp_path / "data", 1)
    home = tmp_path / "home"
    config = _config(base)
    inputs = pipeline_lib.run_inputs(config, str(base), str(home / "bucket"))
    _publish(home / "bucket", "20260101T000000Z-aaaaaa", pipeline_lib.inputs_digest(config, inputs).digest, latest=True)
    return config, str(home)


def test_run_with_nothing_new_prints_the_version_and_runs_nothing(unchanged, capsys, caplog):
    from pipeline import local_runner
    from shelf_audit import run_cmd

    config, home = unchanged
    caplog.set_level(logging.INFO, logger="shelf_audit.run")
    with mock.patch.object(local_runner, "run") as run:
        status = run_cmd.run_pipeline(config, home)
    assert status == 0
    run.assert_not_called()
    assert capsys.readouterr().out.strip() == "nothing new since 20260101T000000Z-aaaaaa (spans 1)"
    assert "use --force to run anyway" in caplog.text


def test_force_or_a_new_span_runs_the_pipeline(unchanged, capsys):
    from pipeline import local_runner
    from shelf_audit import run_cmd

    config, home = unchanged
    with mock.patch.object(local_runner, "run", side_effect=RuntimeError("the pipeline ran")) as run:
        assert run_cmd.run_pipeline(config, home, force=True) == 1
        assert run.call_count == 1
        _spans(Path(config.data.input_base), 2)
        assert run_cmd.run_pipeline(config, home) == 1
        assert run.call_count == 2
    assert "nothing new" not in capsys.readouterr().out


def test_a_digest_that_cannot_be_computed_is_logged_and_the_pipeline_runs(tmp_path, caplog):
    from pipeline import local_runner
    from shelf_audit import run_cmd

    config = _config(_spans(tmp_path / "data", 1))
    broken = mock.patch.object(pipeline_lib, "inputs_digest", side_effect=ValueError("cannot fingerprint"))
    with broken, mock.patch.object(local_runner, "run", side_effect=RuntimeError("the pipeline ran")) as run:
        assert run_cmd.run_pipeline(config, str(tmp_path / "home")) == 1
    run.assert_called_once()
    assert "could not compare this run's inputs with the bucket (cannot fingerprint)" in caplog.text


def test_no_span_at_all_stops_before_the_pipeline_naming_the_data_root(tmp_path, caplog):
    from pipeline import local_runner
    from shelf_audit import run_cmd

    (tmp_path / "data").mkdir()
    config = _config(tmp_path / "data")
    with mock.patch.object(local_runner, "run") as run:
        assert run_cmd.run_pipeline(config, str(tmp_path / "home")) == 1
    run.assert_not_called()
    assert f"no span found under the data root {tmp_path / 'data'}" in caplog.text


def test_the_pusher_gets_the_digest_and_example_gen_examples(tmp_path):
    config = _config(_spans(tmp_path / "data", 1))
    inputs = pipeline_lib.run_inputs(config, str(tmp_path / "data"), str(tmp_path / "bucket"))
    dag = pipeline_lib.create_pipeline(config, str(tmp_path / "root"), inputs)
    pusher = next(c for c in dag.components if c.id == "TFLitePusher")
    assert pusher.exec_properties["inputs_digest"] == pipeline_lib.inputs_digest(config, inputs).digest
    assert pusher.inputs["examples"].producer_component_id == "ImportExampleGen"


def test_one_run_resolves_its_span_window_once_and_passes_it_on(tmp_path):
    from pipeline import local_runner
    from shelf_audit import run_cmd

    config = _config(_spans(tmp_path / "data", 1, 2))
    with (
        mock.patch.object(window, "resolve", wraps=window.resolve) as resolve,
        mock.patch.object(local_runner, "run", side_effect=RuntimeError("the pipeline ran")) as run,
    ):
        assert run_cmd.run_pipeline(config, str(tmp_path / "home")) == 1
    assert resolve.call_count == 1
    inputs = run.call_args.kwargs["inputs"]
    assert inputs.resolution.spans == (2,) and inputs.range_config == inputs.resolution.range_config_json


def test_the_span_window_resolver_loads_no_beam(tmp_path):
    import subprocess
    import sys

    base = _spans(tmp_path / "data", 1, 2)
    probe = (
        "import sys\n"
        "from shelf_data import spans, window\n"
        f"r = window.resolve({str(base)!r}, window.input_config(), spans.parse('last:2'))\n"
        "print(r.spans_text, 'apache_beam' in sys.modules, 'tfx.components' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1,2", "False", "False"]
