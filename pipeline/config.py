"""Typed, frozen pipeline configuration loaded from TOML.

A config file has one table per section below. Every value is checked
before anything runs; a bad key or value raises :class:`ConfigError`
naming the key and the value received, e.g.
``training.batch_size must be >= 1. Received training.batch_size=0``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import tomli

from components.drift_settings import DriftSettings
from components.tflite_pusher.settings import PushSettings
from shelf_data import spans as spans_lib
from shelf_data.contract import CLASS_WEIGHTS, LABELS, SLICE_FEATURES
from shelf_model.hparams import CACHE_CHOICES, TrainingConfig

# Features every record has (TFX needs the partition feature in each one); "" = none.
PARTITION_FEATURES = ("", "lane_id", "device_id")


class ConfigError(ValueError):
    """A config key is unknown, missing or has an invalid value."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the photos are and which spans and split to use."""

    input_base: str = "data/demo"
    # Which spans: "latest", "last:K" (the K newest) or "A-B" / "N" (inclusive); see shelf_data/spans.py.
    spans: str = "latest"
    # Deterministic hash split train : validation : eval (see shelf_data/splits.py): the
    # Trainer fits on train and watches validation; the gate sees only eval.
    train_buckets: int = 8
    validation_buckets: int = 1
    eval_buckets: int = 1
    # Hash on this feature instead of the whole example, so that every photo with one
    # value lands in one split (e.g. "lane_id": near-duplicate shots of a lane stay
    # together). "" hashes each photo on its own.
    partition_feature: str = ""
    # ExampleGen drops photos that do not decode or are under 64x64 and lists them
    # (bad_records.json, the summary, the manifest); above this fraction of a split the
    # run stops before training (components/data_gate.py).
    max_bad_fraction: float = 0.01
    # Photos of each class required in train and in eval, else the run stops before training.
    min_class_count: int = 1


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Evaluation policy: what it takes to bless a candidate."""

    weighted_recall_floor: float = 0.90
    class_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(CLASS_WEIGHTS))
    # Per-class recall floors, by label name.
    class_recall_floors: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"damaged": 0.85})
    # Largest allowed drop of weighted recall against the latest blessed model.
    max_drop: float = 0.01
    slices: Sequence[str] = SLICE_FEATURES


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """The container image and pod sizes of a compiled Kubeflow spec (ignored by local runs)."""

    # The project's image (`make image IMAGE=...`): this package and the hashed lock.
    image: str = ""
    cpu: float = 1.0  # every other task
    memory_gb: float = 4.0
    trainer_cpu: float = 4.0
    trainer_memory_gb: float = 16.0
    evaluator_cpu: float = 2.0
    evaluator_memory_gb: float = 8.0
    # Optional accelerator for the Trainer, e.g. NVIDIA_TESLA_T4 (count 0: none).
    trainer_gpu_type: str = ""
    trainer_gpu_count: int = 0
    # Environment variables every task gets from a Kubernetes secret: VARIABLE = "secret-name/key", e.g.
    # the signing key (push.signing_key = "env:VARIABLE") or a password. Open-source Kubeflow Pipelines only.
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
    """Where a local run keeps ML Metadata: SQLite under the home, or a MySQL/MariaDB server several homes share.

    The password is never in the config: ``password_env`` names the environment
    variable that holds it. Ignored by Kubeflow, which brings its own store.
    """

    kind: str = "sqlite"  # "sqlite" or "mysql"
    path: str = ""  # sqlite: the database file; empty: <home>/metadata.sqlite
    host: str = ""  # mysql: the server (an IP such as 127.0.0.1 for a local one; "localhost" means a Unix socket)
    port: int = 3306
    database: str = ""  # created on first use when the user may
    user: str = ""
    password_env: str = "SHELF_AUDIT_MYSQL_PASSWORD"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration of one pipeline."""

    name: str = "shelf-audit"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)
    push: PushSettings = dataclasses.field(default_factory=PushSettings)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)
    metadata: MetadataConfig = dataclasses.field(default_factory=MetadataConfig)
    drift: DriftSettings = dataclasses.field(default_factory=DriftSettings)
    # Empty: Beam's DirectRunner with its defaults (one worker, in memory). Any beam_args without a flag that
    # ships the code (--sdk_container_image, --extra_packages, --setup_file, ...) make TFX build an sdist of
    # itself in every Beam stage, for remote workers (pipeline.local_runner.tfx_builds_its_own_package).
    beam_args: Sequence[str] = ()

    def replace(self, **sections: Any) -> PipelineConfig:
        """Return a copy with whole sections or fields replaced (then validated)."""
        new = dataclasses.replace(self, **sections)
        validate(new)
        return new


_SECTIONS = {
    "data": DataConfig,
    "training": TrainingConfig,
    "gate": GateConfig,
    "push": PushSettings,
    "kubeflow": KubeflowConfig,
    "metadata": MetadataConfig,
    "drift": DriftSettings,
}


# Keys of older configs and what replaced them.
# compatibility shim: docs/design-decisions.md#compatibility-shims
_REPLACED = {
    "data.span_from": 'data.spans ("latest", "last:K", "A-B" or "N"; e.g. spans = "3-5")',
    "data.span_to": 'data.spans ("latest", "last:K", "A-B" or "N"; e.g. spans = "3-5")',
}


def _fail(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{key} {why}. Received {key}={value!r}")


def _coerce(key: str, value: Any, field: dataclasses.Field) -> Any:
    """Convert a TOML value to the field's type, or raise naming the key."""
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        raise ConfigError(f"{key} has no default")
    kind = field.type
    if isinstance(default, bool) or kind == "bool":
        if not isinstance(value, bool):
            raise _fail(key, value, "must be true or false")
        return value
    if kind in ("int", "int | None"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, value, "must be an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, value, "must be a number")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(key, value, "must be a string")
        return value
    if kind == "Mapping[str, str]":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise _fail(key, value, "must be a table of strings")
        return {str(k): v for k, v in value.items()}
    if kind.startswith("Mapping"):
        if not isinstance(value, Mapping):
            raise _fail(key, value, "must be a table")
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _fail(f"{key}.{k}", v, "must be a number")
            out[str(k)] = float(v)
        return out
    if kind.startswith("Sequence"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _fail(key, value, "must be a list of strings")
        return tuple(value)
    raise AssertionError(f"unhandled field type {kind} for {key}")  # pragma: no cover


def _build(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    for key in unknown:
        if prefix + key in _REPLACED:
            raise ConfigError(
                f"{prefix}{key} was replaced by {_REPLACED[prefix + key]}. Received {prefix}{key}={table[key]!r}"
            )
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(prefix + name, value, fields[name]) for name, value in table.items()}
    try:  # a section that checks its own values (push) names the key in its message
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_label_map(key: str, mapping: Mapping[str, float], *, complete: bool, lo: float, hi: float) -> None:
    for label, value in mapping.items():
        if label not in LABELS:
            raise ConfigError(f"{key} names unknown class {label!r} (classes: {', '.join(LABELS)})")
        if not lo <= value <= hi:
            raise _fail(f"{key}.{label}", value, f"must be in [{lo}, {hi}]")
    if complete and set(mapping) != set(LABELS):
        missing = sorted(set(LABELS) - set(mapping))
        raise ConfigError(f"{key} must give every class a weight; missing {', '.join(missing)}")


def validate(config: PipelineConfig) -> None:
    """Raise ConfigError for the first invalid value found."""
    d, t, g = config.data, config.training, config.gate
    if not config.name or not config.name.replace("-", "").replace("_", "").isalnum():
        raise _fail("name", config.name, "must be letters, digits, '-' or '_'")
    if not d.input_base:
        raise _fail("data.input_base", d.input_base, "must not be empty")
    try:
        spans_lib.parse(d.spans)
    except ValueError as e:
        raise _fail("data.spans", d.spans, str(e)) from None
    for key in ("train_buckets", "validation_buckets", "eval_buckets"):
        if getattr(d, key) < 1:
            raise _fail(f"data.{key}", getattr(d, key), "must be >= 1")
    if not 0.0 <= d.max_bad_fraction < 1.0:
        raise _fail("data.max_bad_fraction", d.max_bad_fraction, "must be in [0, 1)")
    if d.min_class_count < 0:
        raise _fail("data.min_class_count", d.min_class_count, "must be >= 0")
    if d.partition_feature not in PARTITION_FEATURES:
        raise _fail(
            "data.partition_feature", d.partition_feature, f"must be one of {', '.join(map(repr, PARTITION_FEATURES))}"
        )
    if t.weights not in ("none", "imagenet") and not t.weights.endswith(".h5"):
        raise _fail("training.weights", t.weights, "must be 'none', 'imagenet' or a path to a .h5 weights file")
    if t.image_size < 32:
        raise _fail("training.image_size", t.image_size, "must be >= 32")
    for key in ("epochs", "batch_size", "early_stopping_patience", "shuffle_buffer"):
        if getattr(t, key) < 1:
            raise _fail(f"training.{key}", getattr(t, key), "must be >= 1")
    for key in ("fine_tune_epochs", "fine_tune_layers"):
        if getattr(t, key) < 0:
            raise _fail(f"training.{key}", getattr(t, key), "must be >= 0")
    for key in ("steps_per_epoch", "eval_steps"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            raise _fail(f"training.{key}", getattr(t, key), "must be >= 1 when set")
    for key in ("learning_rate", "fine_tune_learning_rate"):
        if not 0 < getattr(t, key) < 1:
            raise _fail(f"training.{key}", getattr(t, key), "must be in (0, 1)")
    if not 0 < t.batchnorm_momentum < 1:
        raise _fail("training.batchnorm_momentum", t.batchnorm_momentum, "must be in (0, 1)")
    if not 0 <= t.dropout < 1:
        raise _fail("training.dropout", t.dropout, "must be in [0, 1)")
    if t.cache not in CACHE_CHOICES:
        raise _fail("training.cache", t.cache, f"must be one of {', '.join(map(repr, CACHE_CHOICES))}")
    if t.cache_memory_limit_mb < 0:
        raise _fail("training.cache_memory_limit_mb", t.cache_memory_limit_mb, "must be >= 0")
    if "://" in t.cache_dir:
        raise _fail("training.cache_dir", t.cache_dir, "must be a folder on the Trainer's local disk (no URL)")
    _check_label_map("training.class_weights", t.class_weights, complete=True, lo=0.0, hi=100.0)
    if sum(t.class_weights.values()) <= 0:
        raise _fail("training.class_weights", dict(t.class_weights), "must not all be 0")
    if not 0 <= g.weighted_recall_floor <= 1:
        raise _fail("gate.weighted_recall_floor", g.weighted_recall_floor, "must be in [0, 1]")
    _check_label_map("gate.class_weights", g.class_weights, complete=True, lo=0.0, hi=100.0)
    if sum(g.class_weights.values()) <= 0:
        raise _fail("gate.class_weights", dict(g.class_weights), "must not all be 0")
    _check_label_map("gate.class_recall_floors", g.class_recall_floors, complete=False, lo=0.0, hi=1.0)
    if not 0 <= g.max_drop <= 1:
        raise _fail("gate.max_drop", g.max_drop, "must be in [0, 1]")
    for s in g.slices:
        if s not in SLICE_FEATURES:
            raise _fail("gate.slices", list(g.slices), f"may only name {', '.join(SLICE_FEATURES)}")
    k = config.kubeflow
    for key in ("cpu", "memory_gb", "trainer_cpu", "trainer_memory_gb", "evaluator_cpu", "evaluator_memory_gb"):
        if getattr(k, key) <= 0:
            raise _fail(f"kubeflow.{key}", getattr(k, key), "must be > 0")
    if k.trainer_gpu_count < 0:
        raise _fail("kubeflow.trainer_gpu_count", k.trainer_gpu_count, "must be >= 0")
    if k.trainer_gpu_count and not k.trainer_gpu_type:
        raise _fail(
            "kubeflow.trainer_gpu_type", k.trainer_gpu_type, "must name the accelerator when trainer_gpu_count > 0"
        )
    for variable, source in k.secrets.items():
        if not _ENV_NAME.fullmatch(variable):
            raise _fail(f"kubeflow.secrets.{variable}", source, "must be named like an environment variable")
        if not _SECRET_KEY.fullmatch(source):
            raise _fail(f"kubeflow.secrets.{variable}", source, "must be 'secret-name/key' (a Kubernetes secret)")
    _validate_metadata(config.metadata)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Kubernetes secret's name (a DNS subdomain) and one of its keys.
_SECRET_KEY = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[-._a-zA-Z0-9]+")
_DATABASE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _validate_metadata(m: MetadataConfig) -> None:
    if m.kind not in ("sqlite", "mysql"):
        raise _fail("metadata.kind", m.kind, "must be 'sqlite' or 'mysql'")
    if m.kind == "sqlite":
        for key in ("host", "database", "user"):
            if getattr(m, key):
                raise _fail(f"metadata.{key}", getattr(m, key), "only applies to metadata.kind = 'mysql'")
        return
    if m.path:
        raise _fail("metadata.path", m.path, "only applies to metadata.kind = 'sqlite'")
    for key in ("host", "database", "user"):
        if not getattr(m, key):
            raise _fail(f"metadata.{key}", getattr(m, key), "must be set when metadata.kind = 'mysql'")
    if not 1 <= m.port <= 65535:
        raise _fail("metadata.port", m.port, "must be in [1, 65535]")
    if not _DATABASE_NAME.fullmatch(m.database):
        raise _fail("metadata.database", m.database, "must be 1 to 64 letters, digits or '_'")
    if not _ENV_NAME.fullmatch(m.password_env):
        raise _fail(
            "metadata.password_env",
            m.password_env,
            "must name an environment variable (letters, digits, '_'; the password itself never goes in the config)",
        )


def from_dict(raw: Mapping[str, Any]) -> PipelineConfig:
    """Build and validate a config from a parsed TOML document."""
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise _fail(key, value, "must be a table")
            kwargs[key] = _build(_SECTIONS[key], value, key + ".")
        elif key == "name":
            kwargs["name"] = _coerce("name", value, dataclasses.fields(PipelineConfig)[0])
        elif key == "beam_args":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail("beam_args", value, "must be a list of strings")
            kwargs["beam_args"] = tuple(value)
        else:
            raise ConfigError(f"unknown key {key} (known: name, beam_args, {', '.join(_SECTIONS)})")
    config = PipelineConfig(**kwargs)
    validate(config)
    return config


def load(path: str | os.PathLike) -> PipelineConfig:
    """Load and validate a TOML config file.

    Raises:
      ConfigError: the file is missing, not valid TOML, or holds an invalid value.
    """
    try:
        with open(path, "rb") as f:
            raw = tomli.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except tomli.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    try:
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def to_dict(config: PipelineConfig) -> dict[str, Any]:
    """Plain-data view of the config (for logs, custom_config and the manifest)."""
    return dataclasses.asdict(config)
