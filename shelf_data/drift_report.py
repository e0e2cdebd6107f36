"""``drift.json``: the checks SpanDrift (:mod:`components.drift`) made between two spans, and the verdict.

SpanDrift writes it into its output artifact; the run summary, the HTML run
report and the pusher's manifest (its ``drift`` block) read it back with
:func:`read_report` and :meth:`DriftReport.from_dict`.
"""

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

REPORT_FILE = "drift.json"


@dataclasses.dataclass(frozen=True)
class Check:
    """One measured difference between the two spans, and its threshold."""

    name: str  # a feature (device_id) or an image measure (image brightness)
    measure: str  # infinity_norm, jensen_shannon_divergence, or "<statistic> relative change"
    value: float
    threshold: float
    previous: float | None = None
    current: float | None = None
    detail: str = ""

    @property
    def drifted(self) -> bool:
        """Above the threshold (TFDV's rule too: equal passes)."""
        return self.value > self.threshold

    def describe(self) -> str:
        """``device_id: infinity_norm 0.2300 > threshold 0.1000 (largest change: 'zebra-tc52')``."""
        relation = ">" if self.drifted else "<="
        text = f"{self.name}: {self.measure} {self.value:.4f} {relation} threshold {self.threshold:.4f}"
        if self.previous is not None and self.current is not None:
            text += f" ({self.previous:.1f} -> {self.current:.1f})"
        if self.detail:
            text += f" ({self.detail})"
        return text


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The drift of span ``current_span`` against ``previous_span`` (None: nothing to compare)."""

    current_span: int
    previous_span: int | None
    checks: tuple[Check, ...] = ()
    sample_images: Mapping[str, int] = dataclasses.field(default_factory=dict)  # span -> photos decoded
    stop_on_drift: bool = False
    note: str = ""

    @property
    def drifted(self) -> list[Check]:
        """The checks above their threshold."""
        return [c for c in self.checks if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``drift.json`` and the manifest's ``drift`` block."""
        return {
            "current_span": self.current_span,
            "previous_span": self.previous_span,
            "drifted": bool(self.drifted),
            "stop_on_drift": self.stop_on_drift,
            "checks": [dict(dataclasses.asdict(c), drifted=c.drifted) for c in self.checks],
            "sample_images": dict(self.sample_images),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DriftReport":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(Check)}
        checks = tuple(Check(**{k: v for k, v in c.items() if k in names}) for c in raw.get("checks", []))
        return cls(
            raw["current_span"],
            raw.get("previous_span"),
            checks,
            raw.get("sample_images", {}),
            raw.get("stop_on_drift", False),
            raw.get("note", ""),
        )

    def headline(self) -> str:
        """One line: what was compared and the verdict."""
        if self.previous_span is None:
            return f"drift: span {self.current_span} not compared: {self.note}"
        verdict = (
            f"{len(self.drifted)} of {len(self.checks)} checks above threshold"
            if self.drifted
            else f"none of {len(self.checks)} checks above threshold"
        )
        if self.drifted:
            verdict += " (run stopped: drift.stop_on_drift = true)" if self.stop_on_drift else " (reported only)"
        return f"drift: span {self.current_span} vs span {self.previous_span}: {verdict}"

    def error_message(self) -> str:
        """The message that stops a run: every drifted check, named."""
        return (
            f"span {self.current_span} drifted from span {self.previous_span} and drift.stop_on_drift is true; "
            "run stopped before Transform:\n  " + "\n  ".join(c.describe() for c in self.drifted)
        )


def write_report(report: DriftReport, uri: str) -> str:
    """Write ``drift.json`` under ``uri``; return its path."""
    tf.io.gfile.makedirs(uri)
    path = os.path.join(uri, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return path


def read_report(uri: str) -> dict[str, Any] | None:
    """``drift.json`` of a SpanDrift output artifact, or None when there is none."""
    path = os.path.join(uri, REPORT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())
