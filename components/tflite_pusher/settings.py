"""The TFLite pusher's settings: the ``[push]`` config section, the component's parameters, the executor's input.

:class:`PushSettings` is the one definition: the config loader builds it from
``[push]``, :class:`components.tflite_pusher.TFLitePusher` turns it into
execution parameters (:meth:`PushSettings.exec_properties`) and the executor
reads it back (:meth:`PushSettings.from_exec_properties`). Every value is
checked when the settings are made, with a message that names the key, e.g.
``push.golden_samples must be >= 1. Received push.golden_samples=0``.

Free of TensorFlow and TFX imports, so that the config loader stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bucket import signing
from shelf_tflite import variants as push_defaults
from shelf_tflite.variants import DEFAULT_PARITY_TOLERANCES, VARIANTS

# Execution parameters of the TFLitePusher that carry the settings.
BUCKET_KEY = "bucket"
MODEL_NAME_KEY = "model_name"
VARIANTS_KEY = "variants"  # JSON list
DEFAULT_VARIANT_KEY = "default_variant"
SIZE_BUDGET_KEY = "size_budget_bytes"
LATENCY_BUDGET_KEY = "latency_budget_ms"
DAMAGED_TOLERANCE_KEY = "damaged_recall_tolerance"
PARITY_TOLERANCES_KEY = "parity_tolerances"  # JSON object
GOLDEN_COUNT_KEY = "golden_count"
REPRESENTATIVE_COUNT_KEY = "representative_count"
SIGNING_KEY_KEY = "signing_key"  # the key's source (file:/env:/gcpkms://), never the key itself
LIVE_GATE_KEY = "live_gate"  # JSON: enabled, max_recall_drop, max_regressions (LiveGateConfig)
CAMERA_PER_CLASS_KEY = "camera_goldens_per_class"  # original eval photos per class kept as camera goldens

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _fail(key: str, value: Any, why: str) -> ValueError:
    return ValueError(f"push.{key} {why}. Received push.{key}={value!r}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number between 0 and 1. Received {name}={value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (a fraction, not a percentage). Received {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class LiveGateConfig:
    """Thresholds of the live gate (:mod:`components.tflite_pusher.live_gate`).

    Attributes:
        enabled: run the gate at all (off: every result is ``"disabled"``).
        max_recall_drop: largest allowed drop of any class's recall,
            candidate vs live, absolute (0.02 = two points).
        max_regressions: largest allowed fraction of eval photos the live
            model gets right and the candidate gets wrong.
    """

    enabled: bool = True
    max_recall_drop: float = 0.02
    max_regressions: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false. Received enabled={self.enabled!r}")
        _check_fraction("max_recall_drop", self.max_recall_drop)
        _check_fraction("max_regressions", self.max_regressions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready thresholds (recorded with each comparison)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PushSettings:
    """Where and how the blessed model is converted, verified and published."""

    bucket: str = ""  # empty: <home>/bucket on a local run
    model_name: str = push_defaults.MODEL_NAME
    variants: Sequence[str] = push_defaults.DEFAULT_VARIANTS
    default_variant: str = push_defaults.DEFAULT_VARIANT
    size_budget_mb: float = push_defaults.SIZE_BUDGET_BYTES / 1_000_000
    latency_budget_ms: float = push_defaults.LATENCY_BUDGET_MS
    damaged_recall_tolerance: float = push_defaults.DAMAGED_RECALL_TOLERANCE
    # Largest absolute probability difference from the SavedModel on the golden samples, per variant.
    parity_tolerances: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PARITY_TOLERANCES))
    golden_samples: int = push_defaults.GOLDEN_COUNT
    # Train photos that calibrate the int8 variant.
    representative_count: int = push_defaults.REPRESENTATIVE_COUNT
    # Original eval photos (RGB JPEGs) per class published in golden/camera/ for the app's own preprocessing test.
    camera_goldens_per_class: int = push_defaults.CAMERA_GOLDENS_PER_CLASS
    # The gate against what is live: each variant vs the TFLite model at LATEST, on the eval split.
    live_gate: bool = True
    live_max_recall_drop: float = 0.02  # largest drop of any class's recall vs the live model (absolute)
    live_max_regressions: float = 0.01  # largest share of eval photos the live model gets right and the candidate wrong
    # Where the manifest signing key comes from: "file:/path/key.pem", "env:VAR" or
    # "gcpkms://projects/.../cryptoKeyVersions/N"; empty: unsigned (SHELF_AUDIT_SIGNING_KEY overrides).
    signing_key: str = ""

    def __post_init__(self) -> None:
        """Check every value; raise ValueError naming the first bad key."""
        variants = list(self.variants)
        if not variants or any(v not in VARIANTS for v in variants) or len(set(variants)) != len(variants):
            raise _fail("variants", variants, f"must be a non-empty subset of {', '.join(VARIANTS)}")
        if self.default_variant not in variants:
            raise _fail("default_variant", self.default_variant, f"must be one of push.variants {variants}")
        if not _MODEL_NAME.match(self.model_name):
            raise _fail("model_name", self.model_name, "must be a plain folder name")
        for key in ("size_budget_mb", "latency_budget_ms"):
            if not getattr(self, key) > 0:
                raise _fail(key, getattr(self, key), "must be > 0")
        if not 0 <= self.damaged_recall_tolerance <= 1:
            raise _fail("damaged_recall_tolerance", self.damaged_recall_tolerance, "must be in [0, 1]")
        bad = {k: v for k, v in self.parity_tolerances.items() if k not in VARIANTS or not v >= 0}
        if bad:
            raise _fail("parity_tolerances", bad, "must map variants to values >= 0")
        if self.golden_samples < 1:
            raise _fail("golden_samples", self.golden_samples, "must be >= 1")
        if "int8" in variants and self.representative_count < 1:
            raise _fail("representative_count", self.representative_count, "must be >= 1 to calibrate int8")
        if self.camera_goldens_per_class < 0:
            raise _fail("camera_goldens_per_class", self.camera_goldens_per_class, "must be >= 0")
        for key in ("live_max_recall_drop", "live_max_regressions"):
            if not 0 <= getattr(self, key) <= 1:
                raise _fail(key, getattr(self, key), "must be in [0, 1] (a fraction)")
        if self.signing_key:
            try:
                signing.check_source(self.signing_key)
            except ValueError as e:  # its message never echoes a key pasted into the config
                raise ValueError(f"push.{e}") from None

    @property
    def size_budget_bytes(self) -> int:
        """The size budget in bytes (the config gives megabytes)."""
        return int(round(self.size_budget_mb * 1_000_000))

    def live_gate_config(self) -> LiveGateConfig:
        """The live gate's thresholds."""
        return LiveGateConfig(self.live_gate, self.live_max_recall_drop, self.live_max_regressions)

    def exec_properties(self) -> dict[str, Any]:
        """The component's execution parameters for these settings (the bucket is a run input: not here)."""
        return {
            MODEL_NAME_KEY: self.model_name,
            VARIANTS_KEY: json.dumps(list(self.variants)),
            DEFAULT_VARIANT_KEY: self.default_variant,
            SIZE_BUDGET_KEY: self.size_budget_bytes,
            LATENCY_BUDGET_KEY: float(self.latency_budget_ms),
            DAMAGED_TOLERANCE_KEY: float(self.damaged_recall_tolerance),
            PARITY_TOLERANCES_KEY: json.dumps(dict(self.parity_tolerances), sort_keys=True),
            GOLDEN_COUNT_KEY: int(self.golden_samples),
            REPRESENTATIVE_COUNT_KEY: int(self.representative_count),
            SIGNING_KEY_KEY: self.signing_key or None,
            LIVE_GATE_KEY: json.dumps(self.live_gate_config().to_dict(), sort_keys=True),
            CAMERA_PER_CLASS_KEY: int(self.camera_goldens_per_class),
        }

    @classmethod
    def from_exec_properties(cls, props: Mapping[str, Any]) -> PushSettings:
        """The settings a component's execution parameters carry; a parameter left out keeps its default.

        Raises:
            ValueError: the bucket is empty, or a value is invalid (named as in the config).
        """
        if not props.get(BUCKET_KEY):
            raise ValueError(
                f"the model bucket is empty: set the pipeline's bucket. Received bucket={props.get(BUCKET_KEY)!r}"
            )
        values: dict[str, Any] = {"bucket": props[BUCKET_KEY]}
        present = {key: value for key, value in props.items() if value is not None and value != ""}
        if MODEL_NAME_KEY in present:
            values["model_name"] = present[MODEL_NAME_KEY]
        if VARIANTS_KEY in present:
            values["variants"] = tuple(json.loads(present[VARIANTS_KEY]))
        if DEFAULT_VARIANT_KEY in present:
            values["default_variant"] = present[DEFAULT_VARIANT_KEY]
        if present.get(SIZE_BUDGET_KEY):
            values["size_budget_mb"] = int(present[SIZE_BUDGET_KEY]) / 1_000_000
        if present.get(LATENCY_BUDGET_KEY):
            values["latency_budget_ms"] = float(present[LATENCY_BUDGET_KEY])
        if DAMAGED_TOLERANCE_KEY in present:
            values["damaged_recall_tolerance"] = float(present[DAMAGED_TOLERANCE_KEY])
        if PARITY_TOLERANCES_KEY in present:
            values["parity_tolerances"] = json.loads(present[PARITY_TOLERANCES_KEY])
        if present.get(GOLDEN_COUNT_KEY):
            values["golden_samples"] = int(present[GOLDEN_COUNT_KEY])
        if present.get(REPRESENTATIVE_COUNT_KEY):
            values["representative_count"] = int(present[REPRESENTATIVE_COUNT_KEY])
        if CAMERA_PER_CLASS_KEY in present:
            values["camera_goldens_per_class"] = int(present[CAMERA_PER_CLASS_KEY])
        if SIGNING_KEY_KEY in present:
            values["signing_key"] = present[SIGNING_KEY_KEY]
        if LIVE_GATE_KEY in present:
            live = LiveGateConfig(**json.loads(present[LIVE_GATE_KEY]))
            values.update(
                live_gate=live.enabled,
                live_max_recall_drop=live.max_recall_drop,
                live_max_regressions=live.max_regressions,
            )
        return cls(**values)
