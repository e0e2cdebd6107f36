"""How the photos were split, from StatisticsGen's output: counts per split and class.

StatisticsGen gets the curated schema, in which ``label`` is categorical, so
TFDV counts every label value exactly per split (a rank histogram); these
counts go into the run summary and the published manifest, beside the split
ratios and the seed, so a result can be reproduced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from shelf_data.contract import LABEL_KEY, LABELS

STATS_FILE = "FeatureStats.pb"


def _label_counts(dataset: Any) -> dict[str, int]:
    counts = dict.fromkeys(LABELS, 0)
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name != LABEL_KEY:
            continue
        for bucket in feature.string_stats.rank_histogram.buckets:
            index = int(bucket.label)
            if 0 <= index < len(LABELS):
                counts[LABELS[index]] = int(bucket.sample_count)
    return counts


def read_split_counts(statistics_uri: str, split_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{split: {"examples": n, "<label>": n, ...}}`` from a StatisticsGen artifact folder.

    Splits whose statistics file is missing are left out (and so show as absent, not as zero).
    """
    import tensorflow_data_validation as tfdv

    out: dict[str, dict[str, int]] = {}
    for split in split_names:
        path = os.path.join(statistics_uri, f"Split-{split}", STATS_FILE)
        try:
            stats = tfdv.load_stats_binary(path)
        except Exception:  # noqa: BLE001 - a missing or unreadable split is reported as absent
            continue
        if not stats.datasets:
            continue
        dataset = stats.datasets[0]
        out[split] = {"examples": int(dataset.num_examples), **_label_counts(dataset)}
    return out


def split_record(
    buckets: Mapping[str, int], partition_feature: str, seed: int, counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """The ``splits`` block of the manifest and the summary: ratios, grouping, seed and counts."""
    return {
        "hash_buckets": dict(buckets),
        "partition_feature": partition_feature or None,
        "method": f"deterministic hash of {f'the {partition_feature} feature' if partition_feature else 'each photo'}",
        "training_seed": seed,
        "counts": {split: dict(c) for split, c in counts.items()},
    }


def format_split_table(record: Mapping[str, Any]) -> str:
    """Plain-text table of a :func:`split_record`, one line per split."""
    buckets, counts = record.get("hash_buckets", {}), record.get("counts", {})
    lines = [f"splits ({record.get('method')}; training seed {record.get('training_seed')})"]
    lines.append(f"  {'split':<12}{'buckets':>8}{'photos':>8}" + "".join(f"{label:>11}" for label in LABELS))
    for split, n in buckets.items():
        c = counts.get(split, {})
        row = f"  {split:<12}{n:>8}{c.get('examples', '?'):>8}"
        lines.append(row + "".join(f"{c.get(label, '?'):>11}" for label in LABELS))
    return "\n".join(lines)
