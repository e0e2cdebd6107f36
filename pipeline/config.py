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

from shelf_data import spans as spans_lib
from shelf_data.contract import CLASS_WEIGHTS, LABELS, SLICE_FEATURES
from shelf_model.hparams import CACHE_CHOICES, TrainingConfig
from shelf_tflite import variants as push_defaults
from shelf_tflite.variants import VARIANTS

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
class PushConfig:
    """Where and how the blessed model is converted and published."""

    bucket: str = ""  # empty: <home>/bucket
    model_name: str = push_defaults.MODEL_NAME
    variants: Sequence[str] = push_defaults.DEFAULT_VARIANTS
    default_variant: str = push_defaults.DEFAULT_VARIANT
    size_budget_mb: float = push_defaults.SIZE_BUDGET_BYTES / 1_000_000
    latency_budget_ms: float = push_defaults.LATENCY_BUDGET_MS
    damaged_recall_tolerance: float = push_defaults.DAMAGED_RECALL_TOLERANCE
    golden_samples: int = push_defaults.GOLDEN_COUNT
    # Original eval photos (RGB JPEGs) per class published in golden/camera/ for the app's own preprocessing test.
    camera_goldens_per_class: int = push_defaults.CAMERA_GOLDENS_PER_CLASS
    # The gate against what is live: each variant vs the TFLite model at LATEST, on the eval split.
    live_gate: bool = True
    live_max_recall_drop: float = 0.02  # largest drop of any class's recall vs the live model (absolute)
    live_max_regressions: float = 0.01  # largest share of eval photos the live model gets right and the candidate wrong
    # Where the manifest signing key comes from: "file:/path/key.pem", "env:VAR" or
    # "gcpkms://projects/.../cryptoKeyVersions/N"; empty: unsigned (SHELF_AUDIT_SIGNING_KEY overrides).
    signing_key: str = ""


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
class DriftConfig:
    """Drift between the newest span read and the span before it (components/drift.py)."""

    enabled: bool = True
    # true: drift above a threshold stops the run before Transform; false: it is reported only.
    stop_on_drift: bool = False
    # TFDV drift comparators, per feature: the largest allowed L-infinity distance between the
    # two spans' value shares (the biggest change of any one value's share, 0..1) ...
    infinity_norm: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"label": 0.1, "device_id": 0.1, "lighting": 0.1}
    )
    # ... and the largest allowed Jensen-Shannon divergence (0..1) of the two distributions.
    jensen_shannon_divergence: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Image width, height and mean brightness, from a sample of each span: the largest allowed
    # relative change of their mean, 10th, 50th or 90th percentile.
    image_relative_change: float = 0.15
    image_sample: int = 500


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration of one pipeline."""

    name: str = "shelf-audit"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)
    push: PushConfig = dataclasses.field(default_factory=PushConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)
    metadata: MetadataConfig = dataclasses.field(default_factory=MetadataConfig)
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)
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
    "push": PushConfig,
    "kubeflow": KubeflowConfig,
    "metadata": MetadataConfig,
    "drift": DriftConfig,
}


# Keys of older configs and what replaced them.
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
    return cls(**kwargs)


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
    d, t, g, p = config.data, config.training, config.gate, config.push
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
    if not p.variants or any(v not in VARIANTS for v in p.variants):
        raise _fail("push.variants", list(p.variants), f"must be a non-empty subset of {', '.join(VARIANTS)}")
    if p.default_variant not in p.variants:
        raise _fail("push.default_variant", p.default_variant, f"must be one of push.variants {list(p.variants)}")
    for key in ("size_budget_mb", "latency_budget_ms"):
        if getattr(p, key) <= 0:
            raise _fail(f"push.{key}", getattr(p, key), "must be > 0")
    if not 0 <= p.damaged_recall_tolerance <= 1:
        raise _fail("push.damaged_recall_tolerance", p.damaged_recall_tolerance, "must be in [0, 1]")
    if p.golden_samples < 1:
        raise _fail("push.golden_samples", p.golden_samples, "must be >= 1")
    if p.camera_goldens_per_class < 0:
        raise _fail("push.camera_goldens_per_class", p.camera_goldens_per_class, "must be >= 0")
    for key in ("live_max_recall_drop", "live_max_regressions"):
        if not 0 <= getattr(p, key) <= 1:
            raise _fail(f"push.{key}", getattr(p, key), "must be in [0, 1] (a fraction)")
    if p.signing_key:
        from bucket import signing

        try:
            signing.check_source(p.signing_key)
        except ValueError as e:  # its message never echoes a key pasted into the config
            raise ConfigError(f"push.{e}") from None
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
    _validate_metadata(config.metadata)
    _validate_drift(config.drift)


def _validate_drift(d: DriftConfig) -> None:
    for measure in ("infinity_norm", "jensen_shannon_divergence"):
        for feature, threshold in getattr(d, measure).items():
            if feature not in SLICE_FEATURES:
                raise ConfigError(
                    f"drift.{measure} names unknown feature {feature!r} (features: {', '.join(SLICE_FEATURES)})"
                )
            if not 0 < threshold <= 1:
                raise _fail(f"drift.{measure}.{feature}", threshold, "must be in (0, 1]")
    if d.image_relative_change <= 0:
        raise _fail("drift.image_relative_change", d.image_relative_change, "must be > 0")
    if not 1 <= d.image_sample <= 10_000:
        raise _fail("drift.image_sample", d.image_sample, "must be in [1, 10000]")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
