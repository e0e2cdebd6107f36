"""SpanDrift's settings: the ``[drift]`` config section and the component's ``settings`` parameter.

:class:`DriftSettings` is the one definition: the config loader builds it from
``[drift]``, the pipeline passes it to :func:`components.drift.SpanDrift` as
JSON (:meth:`DriftSettings.to_json`) and the component reads it back
(:meth:`DriftSettings.from_json`). Values are checked when the settings are
made, with a message naming the key. Free of TFDV and Beam imports, so that
the config loader stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from shelf_data.contract import SLICE_FEATURES


def _fail(key: str, value: Any, why: str) -> ValueError:
    return ValueError(f"drift.{key} {why}. Received drift.{key}={value!r}")


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Drift between the newest span read and the span before it (:mod:`components.drift`)."""

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

    def __post_init__(self) -> None:
        """Check every value; raise ValueError naming the first bad key."""
        for measure in ("infinity_norm", "jensen_shannon_divergence"):
            for feature, threshold in getattr(self, measure).items():
                if feature not in SLICE_FEATURES:
                    raise ValueError(
                        f"drift.{measure} names unknown feature {feature!r} (features: {', '.join(SLICE_FEATURES)})"
                    )
                if not 0 < threshold <= 1:
                    raise _fail(f"{measure}.{feature}", threshold, "must be in (0, 1]")
        if self.image_relative_change <= 0:
            raise _fail("image_relative_change", self.image_relative_change, "must be > 0")
        if not 1 <= self.image_sample <= 10_000:
            raise _fail("image_sample", self.image_sample, "must be in [1, 10000]")

    @property
    def features(self) -> list[str]:
        """Every feature with at least one comparator, in first-seen order."""
        return list(dict.fromkeys([*self.infinity_norm, *self.jensen_shannon_divergence]))

    def to_json(self) -> str:
        """The component's ``settings`` parameter."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DriftSettings:
        """Parse the ``settings`` parameter; a key left out keeps its default."""
        return cls(**json.loads(text))
