"""Figures of the HTML report, drawn with matplotlib's Agg backend and inlined as PNG data URIs.

Why matplotlib: it is maintained, already in the lock, renders to PNG with no
display, no browser and no network, so the report is one HTML file with its
pictures inside (no JavaScript, nothing fetched when it opens from a bucket or
an attachment). Figures are built with :class:`matplotlib.figure.Figure`
directly (not pyplot), so nothing global is touched and nothing leaks.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before anything draws: no display here

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Slices with fewer photos than this are drawn hollow and flagged "small" in tables.
DEFAULT_SMALL_SLICE = 50
_CANDIDATE_COLOR = "#1f77b4"
_BASELINE_COLOR = "#ff7f0e"


def confusion_heatmap(matrix: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """A heat map of a confusion matrix: colour = share of the true class (row), text = count and share."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = 1.1 + 0.75 * len(labels)
    fig = Figure(figsize=(size + 0.9, size))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{matrix[i, j]:.0f}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    return fig


def slice_recall_plot(
    table: pd.DataFrame,
    feature: str,
    metric: str = "weighted_recall",
    small_slice: int = DEFAULT_SMALL_SLICE,
    max_values: int = 20,
) -> Figure:
    """Recall per value of ``feature`` with its 95% interval as error bars; baseline beside the candidate.

    ``table`` is :meth:`report.tfma_reader.EvaluationView.slice_table`. Slices with
    fewer than ``small_slice`` photos are drawn hollow and their label says ``small``. A feature
    with more than ``max_values`` values shows the ``max_values`` with the lowest candidate recall.
    """
    rows = table[table["feature"] == feature]
    values = list(dict.fromkeys(rows["value"]))
    title = f"{metric.replace('_', ' ')} by {feature}"
    if len(values) > max_values:  # e.g. 40 lanes: draw the worst ones, the table has them all
        candidate = rows[rows["model"] == "candidate"].sort_values(metric, na_position="last")
        worst = set(candidate["value"].head(max_values))
        values = [v for v in values if v in worst]
        title += f" (the {max_values} lowest of {len(set(rows['value']))})"
    models = [m for m in ("candidate", "baseline") if (rows["model"] == m).any()]
    height = max(2.2, 0.32 * len(values) * max(1, len(models)) + 1.2)
    fig = Figure(figsize=(7.5, height))
    ax = fig.add_subplot()
    offsets = {"candidate": 0.0, "baseline": 0.3} if len(models) > 1 else {"candidate": 0.0}
    colors = {"candidate": _CANDIDATE_COLOR, "baseline": _BASELINE_COLOR}
    tick_labels = []
    labelled: set[str] = set()
    for value in values:
        count = rows[(rows["value"] == value) & (rows["model"] == "candidate")]["count"]
        n = float(count.iloc[0]) if len(count) else math.nan
        small = not math.isnan(n) and n < small_slice
        tick_labels.append(f"{value} (n={n:.0f}{', small' if small else ''})")
    for model in models:
        part = rows[rows["model"] == model].set_index("value")
        for index, value in enumerate(values):
            if value not in part.index:
                continue
            row = part.loc[value]
            y = index + offsets[model]
            x = float(row[metric])
            if math.isnan(x):
                ax.text(0.01, y, "n/a", va="center", fontsize=7, color="gray")
                continue
            lo, hi = float(row[f"{metric}_lo"]), float(row[f"{metric}_hi"])
            small = float(row["count"]) < small_slice if not math.isnan(float(row["count"])) else False
            err = None
            if not (math.isnan(lo) or math.isnan(hi)):
                err = [[max(0.0, x - max(lo, 0.0))], [max(0.0, min(hi, 1.0) - x)]]
            ax.errorbar(
                x,
                y,
                xerr=err,
                fmt="o",
                color=colors[model],
                markerfacecolor="white" if small else colors[model],
                capsize=3,
                label=None if model in labelled else model,
            )
            labelled.add(model)
    ax.set_yticks([i + (0.15 if len(models) > 1 else 0.0) for i in range(len(values))], labels=tick_labels)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"{metric.replace('_', ' ')} (95% interval; hollow: fewer than {small_slice} photos)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(models) > 1:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def counts_bar(counts: dict[str, dict[str, int]], title: str) -> Figure:
    """Stacked bars: one bar per key of ``counts`` (e.g. a device), stacked by class."""
    keys = list(counts)
    classes = sorted({c for v in counts.values() for c in v})
    fig = Figure(figsize=(7.5, max(1.8, 0.3 * len(keys) + 1.0)))
    ax = fig.add_subplot()
    left = np.zeros(len(keys))
    for cls in classes:
        widths = np.array([counts[k].get(cls, 0) for k in keys], dtype=float)
        ax.barh(range(len(keys)), widths, left=left, label=cls)
        left += widths
    ax.set_yticks(range(len(keys)), labels=keys)
    ax.invert_yaxis()
    ax.set_xlabel("photos")
    ax.set_title(title, fontsize=10)
    if classes:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """The figure as an inline PNG ``data:image/png;base64,...`` URI (the figure is then discarded)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clf()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """Encoded image bytes as a data URI."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
