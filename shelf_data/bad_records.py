"""The bad-record file ExampleGen writes: which photos were dropped, why, and how many per split.

ExampleGen's Beam step (:mod:`components.example_gen.record_check`) drops records whose image does not
decode or is smaller than the contract's minimum and writes ``<examples artifact uri>/bad_records.json``
with :func:`build_report`; DataGate, the run summary, the HTML report and the pusher's manifest read it
with :func:`read_bad_records` (None when no data-quality step wrote one). Plain Python (TensorFlow only
for non-local paths), so readers stay cheap to import.

See docs/running.md#bad-records-broken-files-and-empty-spans for the file's format.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

FILE_NAME = "bad_records.json"
MAX_RECORDS = 1000
# Records the manifest carries (the file keeps up to MAX_RECORDS).
MANIFEST_RECORDS = 100
DEFAULT_MAX_BAD_FRACTION = 0.01

# Reasons a record is dropped (the keys of ``by_reason``).
DOES_NOT_DECODE = "does not decode"
TOO_SMALL = "too small"
NO_IMAGE = "no image"


def _is_local(path: str) -> bool:
    return "://" not in path


def bad_records_path(examples_uri: str) -> str:
    """``<examples_uri>/bad_records.json``."""
    return os.path.join(examples_uri, FILE_NAME)


def read_bad_records(examples_uri: str) -> dict | None:
    """The bad-record report of an Examples artifact folder, or None when no data-quality step wrote one.

    Raises:
        ValueError: the file exists but is not a JSON object (the message names the file).
    """
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    path = bad_records_path(examples_uri)
    try:
        if _is_local(path):
            if not os.path.exists(path):
                return None
            with open(path, encoding="utf-8") as f:
                text = f.read()
        else:
            import tensorflow as tf

            if not tf.io.gfile.exists(path):
                return None
            with tf.io.gfile.GFile(path, "r") as f:
                text = f.read()
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def write_bad_records(examples_uri: str, report: Mapping[str, Any]) -> str:
    """Write ``report`` to ``<examples_uri>/bad_records.json``; returns the path."""
    path = bad_records_path(examples_uri)
    text = json.dumps(report, indent=1, sort_keys=True)
    if _is_local(path):
        os.makedirs(examples_uri, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        import tensorflow as tf

        tf.io.gfile.makedirs(examples_uri)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
    return path


def build_report(
    input_base: str,
    max_bad_fraction: float,
    read_by_split: Mapping[str, int],
    dropped: Iterable[Mapping[str, Any]],
    splits: Iterable[str] = ("train", "validation", "eval"),
) -> dict:
    """The report from the records read per split and every dropped record (dicts as in the module docstring).

    Records are sorted by (file, index) and capped at :data:`MAX_RECORDS`; counts cover all of them.
    """
    dropped = sorted(dropped, key=lambda r: (r.get("file", ""), int(r.get("index", 0))))
    by_split: dict[str, dict] = {}
    for split in list(splits) + [s for s in read_by_split if s not in splits]:
        read = int(read_by_split.get(split, 0))
        n = sum(1 for r in dropped if r.get("split") == split)
        by_split[split] = {"read": read, "dropped": n, "fraction": (n / read) if read else 0.0}
    by_reason: dict[str, int] = {}
    for r in dropped:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    return {
        "max_bad_fraction": float(max_bad_fraction),
        "input_base": input_base,
        "read": sum(int(v) for v in read_by_split.values()),
        "dropped": len(dropped),
        "by_split": by_split,
        "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "records": [dict(r) for r in dropped[:MAX_RECORDS]],
    }


def split_allowance(read: int, max_bad_fraction: float) -> int:
    """Dropped photos a split of ``read`` photos may have: ``max_bad_fraction`` of it plus a margin for chance.

    Which split a bad photo lands in is a hash, so a small split (an ``eval`` of 60) easily gets 2 of 6 bad photos
    in 600 (1% overall) by chance. The margin is 3 standard deviations of that count
    (``f*n + 3*sqrt(f*n)``, rounded up); the run as a whole gets no margin (see :func:`over_limit`).
    """
    expected = max_bad_fraction * read
    return math.ceil(expected + 3 * math.sqrt(expected)) if read else 0


def over_limit(report: Mapping[str, Any], max_bad_fraction: float | None = None) -> list[str]:
    """Why the dropped photos stop the run ([] = they do not), e.g. ``all splits (40 of 600, 6.7%)``, ``eval (...)``.

    Stops: more than ``max_bad_fraction`` of all photos read, or a split above its :func:`split_allowance`.
    The limit is the report's own unless given.
    """
    limit = report.get("max_bad_fraction", DEFAULT_MAX_BAD_FRACTION) if max_bad_fraction is None else max_bad_fraction
    read, dropped = int(report.get("read", 0)), int(report.get("dropped", 0))
    reasons = []
    if read and dropped / read > limit:
        reasons.append(f"all splits ({dropped} of {read}, {dropped / read:.1%})")
    for split, c in report.get("by_split", {}).items():
        if c.get("dropped", 0) > split_allowance(int(c.get("read", 0)), limit):
            reasons.append(
                f"{split} ({c['dropped']} of {c['read']}, {c.get('fraction', 0.0):.1%}; "
                f"allowed {split_allowance(int(c['read']), limit)})"
            )
    return reasons


def format_reasons(report: Mapping[str, Any]) -> str:
    """``does not decode: 5, too small: 1``."""
    return ", ".join(f"{reason}: {n}" for reason, n in report.get("by_reason", {}).items())


def format_record(record: Mapping[str, Any]) -> str:
    """One dropped record as a line: ``span-1/part-0.tfrecord.gz record 34 (train; lane 7, ...): does not decode``."""
    keys = ("lane_id", "device_id", "captured_at")
    who = ", ".join(f"{k}={record[k]}" for k in keys if record.get(k) not in (None, ""))
    where = f"{record.get('split', '?')}" + (f"; {who}" if who else "")
    detail = f" ({record['detail']})" if record.get("detail") else ""
    return f"{record.get('file', '?')} record {record.get('index', '?')} ({where}): {record.get('reason', '?')}{detail}"


def summary_line(report: Mapping[str, Any] | None, path: str = "") -> str:
    """``data: 6 of 600 records dropped (does not decode: 5, too small: 1); list: <path>``, or "" if none dropped."""
    if not report or not report.get("dropped"):
        return ""
    line = f"data: {report['dropped']} of {report.get('read', '?')} records dropped ({format_reasons(report)})"
    return line + (f"; list: {path}" if path else "")


def manifest_entry(report: Mapping[str, Any] | None) -> dict | None:
    """What the manifest carries under ``data_quality``: the counts, by_reason and the first 100 records."""
    if report is None:
        return None
    entry = {k: report[k] for k in ("max_bad_fraction", "read", "dropped", "by_split", "by_reason") if k in report}
    entry["records"] = list(report.get("records", []))[:MANIFEST_RECORDS]
    return entry
