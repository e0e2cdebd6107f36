"""Span selection: ``latest``, ``last:K`` or ``A-B``, and the TFX RangeConfig JSON that carries it.

Photos arrive as spans, ``<input_base>/span-N/*.tfrecord.gz``; a run reads a window of them. The
RangeConfig JSON is what travels: the ``range_config`` runtime parameter of a compiled Kubeflow spec and
ImportExampleGen's ``range_config`` execution property. Plain Python (no TFX import), so the config and
the CLI validate a selection cheaply; resolving a window against the files is :mod:`shelf_data.window`.

See docs/running.md#which-spans-a-run-reads for each form and its RangeConfig.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence

LATEST, LAST, RANGE = "latest", "last", "range"
SYNTAX = "'latest', 'last:K' (K >= 1), 'A-B' (0 <= A <= B) or 'N'"

_LAST = re.compile(r"last:(\d+)")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


@dataclasses.dataclass(frozen=True)
class SpanSelection:
    """Which spans a run reads.

    ``kind`` is ``latest``, ``last`` (``count`` newest spans, none below
    ``first``) or ``range`` (``first`` to ``last`` inclusive).
    """

    kind: str = LATEST
    count: int = 1
    first: int = 0
    last: int = 0

    def __str__(self) -> str:
        if self.kind == LATEST:
            return "latest"
        if self.kind == LAST:
            return f"last:{self.count}" + (f" (spans >= {self.first})" if self.first else "")
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def select(self, present: Iterable[int]) -> list[int]:
        """The spans of ``present`` this selection reads, ascending.

        Raises:
            ValueError: no span of ``present`` falls in the window (the message names both).
        """
        spans = sorted(set(present))
        if self.kind == LATEST:
            chosen = spans[-1:]
        elif self.kind == LAST:
            chosen = [s for s in spans if s >= self.first][-self.count :]
        else:
            chosen = [s for s in spans if self.first <= s <= self.last]
        if not chosen:
            found = format_spans(spans) if spans else "none"
            raise ValueError(f"no span matches the selection {self}; spans present: {found}")
        return chosen


def parse(text: str) -> SpanSelection:
    """Parse ``latest``, ``last:K``, ``A-B`` or ``N``.

    Raises:
        ValueError: ``text`` is none of those (the message gives the accepted forms).
    """
    value = text.strip().lower()
    if value == LATEST:
        return SpanSelection()
    match = _LAST.fullmatch(value)
    if match and int(match[1]) >= 1:
        return SpanSelection(LAST, count=int(match[1]))
    match = _RANGE.fullmatch(value)
    if match:
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if first <= last:
            return SpanSelection(RANGE, first=first, last=last)
    raise ValueError(f"must be {SYNTAX}")


def to_range_config(selection: SpanSelection) -> dict | None:
    """The RangeConfig (as a JSON-ready dict) of ``selection``; None for the latest span."""
    if selection.kind == LATEST:
        return None
    if selection.kind == LAST:
        rolling = {"num_spans": selection.count}
        if selection.first:
            rolling["start_span_number"] = selection.first
        return {"rolling_range": rolling}
    return {"static_range": {"start_span_number": selection.first, "end_span_number": selection.last}}


def to_json(selection: SpanSelection) -> str:
    """RangeConfig JSON of ``selection`` ("" for the latest span, TFX's default)."""
    range_config = to_range_config(selection)
    return json.dumps(range_config, sort_keys=True) if range_config else ""


def static_json(spans: Sequence[int]) -> str:
    """The static RangeConfig JSON covering ``spans`` (first to last)."""
    return to_json(SpanSelection(RANGE, first=min(spans), last=max(spans)))


def from_value(value: str | None) -> SpanSelection:
    """A ``range_config`` value: "" (latest), RangeConfig JSON, or the short forms of :func:`parse`.

    Raises:
        ValueError: anything else, naming the value received.
    """
    text = (value or "").strip()
    if not text:
        return SpanSelection()
    if not text.startswith("{"):
        try:
            return parse(text)
        except ValueError as e:
            raise ValueError(f"range_config {e} or RangeConfig JSON. Received range_config={value!r}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"range_config is not valid JSON ({e}). Received range_config={value!r}") from None
    problem = _check_range_config(raw)
    if problem:
        raise ValueError(f"range_config {problem}. Received range_config={value!r}")
    raw = _camel_to_snake(raw)
    if "rolling_range" in raw:
        rolling = raw["rolling_range"]
        return SpanSelection(LAST, count=rolling["num_spans"], first=rolling.get("start_span_number", 0))
    static = raw["static_range"]  # proto3 JSON leaves out zero fields
    return SpanSelection(RANGE, first=static.get("start_span_number", 0), last=static.get("end_span_number", 0))


def _camel_to_snake(raw: dict) -> dict:
    # Protobuf's JSON accepts both field spellings (static_range and staticRange).
    def snake(key: str) -> str:
        return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), key)

    return {snake(k): _camel_to_snake(v) if isinstance(v, dict) else v for k, v in raw.items()}


def _check_range_config(raw: dict) -> str:
    """Why ``raw`` (a JSON object) is not a RangeConfig this project reads, or ""."""
    raw = _camel_to_snake(raw)
    if set(raw) not in ({"static_range"}, {"rolling_range"}):
        return "must hold exactly one of static_range or rolling_range"

    def ints(table: object, required: Sequence[str], optional: Sequence[str] = ()) -> dict | None:
        if not isinstance(table, dict) or set(table) - set(required) - set(optional) or set(required) - set(table):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in table.values()):
            return None
        return table

    if "static_range" in raw:
        static = ints(raw["static_range"], [], ["start_span_number", "end_span_number"])
        if static is None or static.get("start_span_number", 0) > static.get("end_span_number", 0):
            return "static_range needs integers 0 <= start_span_number <= end_span_number"
        return ""
    rolling = ints(raw["rolling_range"], ["num_spans"], ["start_span_number"])
    if rolling is None or rolling["num_spans"] < 1:
        return "rolling_range needs an integer num_spans >= 1 (and optionally start_span_number >= 0)"
    return ""


def format_spans(spans: Iterable[int]) -> str:
    """``[3, 4, 5, 7]`` -> ``"3-5, 7"``: runs of consecutive spans as ranges."""
    ordered = sorted(set(spans))
    parts: list[str] = []
    start = prev = None
    for span in ordered + [None]:
        if start is not None and (span is None or span != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if span is not None and start is None:
            start = span
        prev = span
    return ", ".join(parts)
