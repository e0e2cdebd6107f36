"""Unit tests of pipeline.config (TOML loading, validation) and the CLI overrides of ``shelf-audit run``."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from unittest import mock

import pytest
import tomli
from absl import logging as absl_logging

from pipeline import config as config_lib
from pipeline.config import ConfigError
from shelf_audit import cli, run_cmd

pytestmark = pytest.mark.unit

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEMO = CONFIGS / "demo.toml"
PRODUCTION = CONFIGS / "production.toml"


@pytest.fixture
def demo_raw() -> dict:
    """The demo config as a parsed TOML document (a fresh copy per test)."""
    with DEMO.open("rb") as f:
        return copy.deepcopy(tomli.load(f))


# --- The shipped configs --------------------------------------------------------


def test_demo_config_loads_with_its_values():
    config = config_lib.load(DEMO)
    assert config.name == "shelf-audit-demo"
    assert config.data.input_base == "data/demo"
    assert config.data.spans == "latest"
    d = config.data
    assert (d.train_buckets, d.validation_buckets, d.eval_buckets, d.partition_feature) == (8, 1, 1, "")
    t = config.training
    assert (t.weights, t.image_size, t.epochs, t.batch_size) == ("none", 128, 15, 32)
    assert t.learning_rate == pytest.approx(0.002)
    assert t.batchnorm_momentum == pytest.approx(0.9)
    assert dict(t.class_weights) == {"ok": 1.0, "misplaced": 1.0, "damaged": 2.0}
    g = config.gate
    assert g.weighted_recall_floor == pytest.approx(0.90)
    assert dict(g.class_weights) == {"ok": 1.0, "misplaced": 1.0, "damaged": 2.0}
    assert dict(g.class_recall_floors) == {"damaged": pytest.approx(0.85)}
    assert g.max_drop == pytest.approx(0.01)
    assert tuple(g.slices) == ("label", "lane_id", "device_id", "lighting")
    assert (tuple(config.push.variants), config.push.default_variant) == (("fp16", "int8", "tasks"), "fp16")
    assert tuple(config.beam_args) == ()  # the DirectRunner's defaults; TFX then stages nothing


def test_production_config_loads_imagenet_15_epochs_and_dataflow():
    config = config_lib.load(PRODUCTION)
    t = config.training
    assert t.weights == "imagenet"
    assert t.epochs + t.fine_tune_epochs == 15
    assert t.fine_tune_epochs > 0 and t.fine_tune_learning_rate < t.learning_rate
    assert config.data.input_base.startswith("gs://")
    assert config.push.bucket.startswith("gs://")
    assert "--runner=DataflowRunner" in config.beam_args
    assert config.gate.weighted_recall_floor >= 0.9


def test_config_is_frozen_and_replace_validates():
    config = config_lib.load(DEMO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.training.epochs = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"training\.batch_size=0"):
        config.replace(training=dataclasses.replace(config.training, batch_size=0))


def test_to_dict_round_trips_through_from_dict():
    config = config_lib.load(DEMO)
    plain = config_lib.to_dict(config)
    assert plain["training"]["class_weights"]["damaged"] == 2.0

    def as_toml(value):  # TOML has no null and only lists
        if isinstance(value, dict):
            return {k: as_toml(v) for k, v in value.items() if v is not None}
        return list(value) if isinstance(value, tuple) else value

    assert config_lib.from_dict(as_toml(plain)) == config


# --- Invalid values: the message names the key and the value --------------------


def _set(raw: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    table = raw
    for key in parents:
        table = table.setdefault(key, {})
    table[leaf] = value


def _delete(raw: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    table = raw
    for key in parents:
        table = table[key]
    del table[leaf]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("training.batch_size", 0, ["training.batch_size must be >= 1", "Received training.batch_size=0"]),
        ("training.cache", "ram", ["training.cache must be one of 'auto', 'memory', 'disk', 'none'", "cache='ram'"]),
        ("training.cache_memory_limit_mb", -1, ["training.cache_memory_limit_mb must be >= 0"]),
        ("training.cache_dir", "gs://b/cache", ["training.cache_dir must be a folder on the Trainer's local disk"]),
        ("training.epochs", -2, ["training.epochs", "training.epochs=-2"]),
        ("training.epochs", "12", ["training.epochs must be an integer", "training.epochs='12'"]),
        ("training.learning_rate", True, ["training.learning_rate must be a number", "=True"]),
        ("training.learning_rate", 1.5, ["training.learning_rate must be in (0, 1)", "=1.5"]),
        ("training.augment", 1, ["training.augment must be true or false", "training.augment=1"]),
        ("training.weights", "resnet50", ["training.weights", "training.weights='resnet50'"]),
        ("training.weights", 3, ["training.weights must be a string", "training.weights=3"]),
        ("training.batchsize", 8, ["unknown key training.batchsize", "batch_size"]),
        ("trainng", {"epochs": 3}, ["unknown key trainng"]),
        ("data.spans", "last:0", ["data.spans must be 'latest', 'last:K' (K >= 1)", "Received data.spans='last:0'"]),
        ("data.spans", "5-2", ["'A-B' (0 <= A <= B) or 'N'", "Received data.spans='5-2'"]),
        ("data.spans", "newest", ["data.spans must be", "data.spans='newest'"]),
        ("data.spans", 3, ["data.spans must be a string", "data.spans=3"]),
        ("data.validation_buckets", 0, ["data.validation_buckets must be >= 1", "data.validation_buckets=0"]),
        ("data.partition_feature", "label", ["data.partition_feature must be one of", "partition_feature='label'"]),
        ("data.span_from", 3, ["data.span_from was replaced by data.spans", 'spans = "3-5"', "data.span_from=3"]),
        ("drift.enabled", "yes", ["drift.enabled must be true or false", "drift.enabled='yes'"]),
        ("drift.stop_on_drift", 1, ["drift.stop_on_drift must be true or false", "drift.stop_on_drift=1"]),
        ("drift.infinity_norm.aisle", 0.1, ["drift.infinity_norm names unknown feature 'aisle'", "label, lane_id"]),
        ("drift.infinity_norm.device_id", 1.5, ["drift.infinity_norm.device_id must be in (0, 1]", "=1.5"]),
        ("drift.jensen_shannon_divergence.label", 0, ["drift.jensen_shannon_divergence.label must be in (0, 1]"]),
        ("drift.jensen_shannon_divergence.label", "0.1", ["jensen_shannon_divergence.label must be a number", "'0.1'"]),
        ("drift.image_relative_change", -0.2, ["drift.image_relative_change must be > 0", "=-0.2"]),
        ("drift.image_sample", 0, ["drift.image_sample must be in [1, 10000]", "drift.image_sample=0"]),
        ("drift.treshold", 0.1, ["unknown key drift.treshold", "stop_on_drift"]),
        ("training.class_weights.broken", 1.0, ["training.class_weights names unknown class 'broken'"]),
        ("training.class_weights.damaged", "2", ["training.class_weights.damaged must be a number", "'2'"]),
        ("gate.class_recall_floors.damaged", 1.2, ["gate.class_recall_floors.damaged", "=1.2"]),
        ("gate.weighted_recall_floor", 1.5, ["gate.weighted_recall_floor must be in [0, 1]", "=1.5"]),
        ("gate.slices", ["label", "aisle"], ["gate.slices may only name", "'aisle'"]),
        ("push.default_variant", "fp32", ["push.default_variant must be one of push.variants", "'fp32'"]),
        ("push.variants", ["fp16", "fp8"], ["push.variants", "'fp8'"]),
        ("name", "shelf audit!", ["name must be letters", "name='shelf audit!'"]),
        ("training.weights", "/models/mnv3.keras", ["training.weights", ".h5", "mnv3.keras"]),
    ],
)
def test_invalid_value_names_key_and_value(demo_raw, key, value, expected):
    _set(demo_raw, key, value)
    with pytest.raises(ConfigError) as excinfo:
        config_lib.from_dict(demo_raw)
    for fragment in expected:
        assert fragment in str(excinfo.value)


def test_missing_class_weight_names_the_class(demo_raw):
    _delete(demo_raw, "gate.class_weights.damaged")
    with pytest.raises(ConfigError, match=r"gate\.class_weights must give every class a weight; missing damaged"):
        config_lib.from_dict(demo_raw)


@pytest.mark.parametrize("table", ["training.class_weights", "gate.class_weights"])
def test_class_weights_must_not_all_be_zero(demo_raw, table):
    for label in ("ok", "misplaced", "damaged"):
        _set(demo_raw, f"{table}.{label}", 0.0)
    with pytest.raises(ConfigError, match=rf"{table} must not all be 0"):
        config_lib.from_dict(demo_raw)


@pytest.mark.parametrize("spans", ["latest", "last:1", "last:12", "5-7", "0-0", "7"])
def test_every_span_selection_form_loads(demo_raw, spans):
    _set(demo_raw, "data.spans", spans)
    assert config_lib.from_dict(demo_raw).data.spans == spans


def test_drift_section_defaults_and_overrides(demo_raw):
    default = config_lib.from_dict(demo_raw).drift
    assert (default.enabled, default.stop_on_drift) == (True, False)
    assert dict(default.infinity_norm) == {"label": 0.1, "device_id": 0.1, "lighting": 0.1}
    assert dict(default.jensen_shannon_divergence) == {}
    assert (default.image_relative_change, default.image_sample) == (0.15, 500)
    _set(demo_raw, "drift.stop_on_drift", True)
    _set(demo_raw, "drift.infinity_norm", {"device_id": 0.2})  # a table replaces the default comparators
    _set(demo_raw, "drift.jensen_shannon_divergence.lighting", 0.05)
    drift = config_lib.from_dict(demo_raw).drift
    assert drift.stop_on_drift is True
    assert dict(drift.infinity_norm) == {"device_id": 0.2}
    assert dict(drift.jensen_shannon_divergence) == {"lighting": 0.05}


def test_load_prefixes_the_file_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(DEMO.read_text().replace("batch_size = 32", "batch_size = 0"))
    with pytest.raises(ConfigError) as excinfo:
        config_lib.load(path)
    assert str(path) in str(excinfo.value)
    assert "training.batch_size=0" in str(excinfo.value)


def test_invalid_toml_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[training\nepochs = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as excinfo:
        config_lib.load(path)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="config file not found") as excinfo:
        config_lib.load(path)
    assert str(path) in str(excinfo.value)


# --- CLI overrides (shelf-audit run) ---------------------------------------------


def _run_args(*flags: str):
    argv = ["run", "--config", str(DEMO), *flags]
    return cli.build_parser(argv).parse_args(argv)


def test_resolve_config_without_flags_is_the_file():
    assert run_cmd.resolve_config(_run_args()) == config_lib.load(DEMO)


def test_resolve_config_applies_every_override(tmp_path):
    args = _run_args(
        "--data",
        str(tmp_path / "photos"),
        "--span",
        "3",
        "--epochs",
        "2",
        "--weights",
        "/models/mnv3.h5",
        "--recall-floor",
        "0.5",
        "--bucket",
        "gs://models",
    )
    config = run_cmd.resolve_config(args)
    assert config.data.input_base == str(tmp_path / "photos")
    assert config.data.spans == "3"
    assert config.training.epochs == 2
    assert config.training.weights == "/models/mnv3.h5"
    assert config.gate.weighted_recall_floor == 0.5
    assert config.push.bucket == "gs://models"
    # Everything else comes from the file.
    demo = config_lib.load(DEMO)
    assert config.training.batch_size == demo.training.batch_size
    assert config.gate.class_recall_floors == demo.gate.class_recall_floors


@pytest.mark.parametrize(
    ("flags", "spans"),
    [((), "latest"), (("--spans", "last:3"), "last:3"), (("--spans", "4-6"), "4-6"), (("--span", "5"), "5")],
)
def test_spans_flags_override_data_spans(flags, spans):
    assert run_cmd.resolve_config(_run_args(*flags)).data.spans == spans


def test_span_and_spans_flags_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        _run_args("--span", "3", "--spans", "last:2")
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--epochs", "0"), "training.epochs=0"),
        (("--recall-floor", "1.5"), "gate.weighted_recall_floor=1.5"),
        (("--weights", "resnet"), "training.weights='resnet'"),
        (("--span", "-1"), "data.spans='-1'"),
        (("--spans", "last:0"), "data.spans='last:0'"),
        (("--spans", "9-3"), "data.spans='9-3'"),
    ],
)
def test_resolve_config_validates_overrides(flags, fragment):
    with pytest.raises(ConfigError) as excinfo:
        run_cmd.resolve_config(_run_args(*flags))
    assert fragment in str(excinfo.value)


def test_cli_run_with_invalid_override_exits_1_before_running(capsys, tmp_path):
    # --verbose keeps run() from filtering the (pytest) log handlers; absl's verbosity is left alone.
    with (
        mock.patch.object(run_cmd, "run_pipeline") as run_pipeline,
        mock.patch.object(absl_logging, "set_verbosity"),
    ):
        status = cli.main(["--verbose", "run", "--config", str(DEMO), "--home", str(tmp_path), "--epochs", "0"])
    assert status == cli.EXIT_ERROR == 1
    run_pipeline.assert_not_called()
    err = capsys.readouterr().err
    assert "invalid config" in err and "training.epochs=0" in err
