"""Build the self-contained HTML run report from a run's artifacts.

One HTML file, images inline as ``data:`` URIs, no script and nothing fetched
from the network, so it opens from a bucket, an attachment or a file URL.
Sections: verdict and gate table; recall per slice with TFMA's 95% intervals
and counts (small slices marked); confusion matrices overall and per slice
feature; candidate vs baseline per slice; TFLite variants vs the SavedModel;
misclassified eval photos from the worst slices; the data (counts, anomalies,
drift, dropped records).

Every section but the evaluation is best effort: a section whose input is
missing or unreadable says so in the report (and in the log) instead of
failing the whole report.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from report import plots
from report.tfma_reader import BASELINE, CANDIDATE, OVERALL, EvaluationView, load_evaluation

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
DEFAULT_GALLERY = 24
# Slice features with at most this many values get one confusion matrix per value.
MAX_MATRICES_PER_FEATURE = 8


@dataclasses.dataclass
class ReportInputs:
    """Where a run's artifacts are: everything is optional but the evaluation (TFMA output folder)."""

    evaluation_uri: str
    blessing_uri: str | None = None
    model_uri: str | None = None  # the Trainer's model artifact (SavedModel under Format-Serving)
    model: Any = None  # that SavedModel already loaded (the pusher has it): the gallery does not load it again
    examples_uri: str | None = None  # ExampleGen's output (raw photos, Split-*/)
    statistics_uri: str | None = None
    anomalies_uri: str | None = None
    drift_uri: str | None = None
    manifest: dict | None = None  # the published manifest (variant checks), None when not published
    run_id: str | None = None
    pipeline_name: str | None = None
    # Why there is no manifest ("not published: <reason>"), when known.
    push_note: str | None = None
    # ExampleGen's spans for these examples (for the data section).
    spans: list[int] | None = None
    small_slice: int = plots.DEFAULT_SMALL_SLICE
    gallery_count: int = DEFAULT_GALLERY


# -- html helpers ---------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1250px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:30px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px} th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f3f3f3;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#17702b;font-weight:600} .fail{color:#b00020;font-weight:600} .muted{color:#777}
.small{background:#fff6d6} .verdict{font-size:18px;font-weight:700;padding:6px 10px;display:inline-block}
.blessed{background:#e3f5e6;color:#17702b} .notblessed{background:#fde7ea;color:#b00020}
.grid{display:flex;flex-wrap:wrap;gap:10px} .card{border:1px solid #ddd;padding:6px;font-size:12px;width:150px}
.card img{width:140px;height:auto;display:block;margin-bottom:4px} .note{color:#8a5a00}
nav a{margin-right:12px;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if math.isnan(number):
        return "-"
    return f"{number:.{digits}f}"


def _interval(value: Any, lo: Any, hi: Any) -> str:
    text = _num(value)
    if lo is None or hi is None or any(math.isnan(float(x)) for x in (lo, hi)):
        return text
    return f"{text} <span class=muted>[{float(lo):.3f}, {float(hi):.3f}]</span>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<h2 id="{anchor}">{_e(title)}</h2>\n{body}\n'


def _slice_plot(what: str, table: Any, feature: str, small_slice: Any, alt: str) -> str:
    """The weighted-recall-by-``feature`` plot of ``table`` as an <img>, or the note of why it is missing."""
    return _guarded(
        what, lambda: _img(plots.to_data_uri(plots.slice_recall_plot(table, feature, small_slice=small_slice)), alt)
    )


def _guarded(name: str, func: Callable[[], str]) -> str:
    """Run one section; on any error, the section says what failed instead of the report failing."""
    try:
        return func()
    except Exception as error:  # noqa: BLE001 - one broken section must not lose the whole report
        log.warning("report section %s failed: %s: %s", name, type(error).__name__, error)
        return f'<p class="note">This section could not be built: {_e(type(error).__name__)}: {_e(error)}</p>'


# -- sections -------------------------------------------------------------------


def read_blessing(blessing_uri: str | None) -> bool | None:
    """The Evaluator's verdict from its blessing artifact folder (``BLESSED`` / ``NOT_BLESSED`` file)."""
    if not blessing_uri:
        return None
    import tensorflow as tf

    if tf.io.gfile.exists(os.path.join(blessing_uri, "BLESSED")):
        return True
    if tf.io.gfile.exists(os.path.join(blessing_uri, "NOT_BLESSED")):
        return False
    return None


def _verdict_section(view: EvaluationView, inputs: ReportInputs) -> str:
    blessed = read_blessing(inputs.blessing_uri)
    if blessed is None:
        blessed = view.validation_ok
    if blessed is None:
        verdict = '<span class="verdict">verdict unknown (no blessing, no validation result)</span>'
    elif blessed:
        verdict = '<span class="verdict blessed">BLESSED</span>'
    else:
        verdict = '<span class="verdict notblessed">NOT blessed</span>'
    parts = [verdict]
    if view.failures:
        parts.append("<ul>" + "".join(f"<li class=fail>{_e(f)}</li>" for f in view.failures) + "</ul>")
    baseline = "with a baseline (the latest blessed model)" if view.has_baseline else "without a baseline"
    parts.append(f"<p>Evaluated {baseline}. TFMA output: <code>{_e(view.uri)}</code></p>")
    rows = []
    classes = []
    for r in view.gate_rows():
        count = r.metric == "example_count"
        value = f"{r.value:.0f}" if count else _interval(r.value, r.lo, r.hi)
        mark = '<span class="pass">yes</span>' if r.passed else '<span class="fail">NO</span>'
        base = "-" if r.baseline is None else (f"{r.baseline:.0f}" if count else _num(r.baseline))
        delta = "-" if r.delta is None else (f"{r.delta:+.0f}" if count else f"{r.delta:+.4f}")
        rows.append([_e(r.metric), value, _e(r.threshold or ""), mark, base, delta])
        classes.append("" if r.passed else "fail")
    parts.append("<h3>Gate (overall slice)</h3>")
    parts.append(
        _table(["metric", "value [95% interval]", "threshold", "pass", "baseline", "delta vs baseline"], rows, classes)
    )
    return "".join(parts)


def _slice_rows(table: pd.DataFrame, feature: str, labels: Sequence[str], small: int, model: str) -> str:
    rows, classes = [], []
    part = table[(table["feature"] == feature) & (table["model"] == model)]
    for _, r in part.iterrows():
        is_small = not math.isnan(r["count"]) and r["count"] < small
        cells = [_e(r["value"]), f"{r['count']:.0f}" + (" <b>small</b>" if is_small else "")]
        cells.append(_interval(r["weighted_recall"], r["weighted_recall_lo"], r["weighted_recall_hi"]))
        for label in labels:
            key = f"recall/{label}"
            cells.append(_interval(r[key], r[f"{key}_lo"], r[f"{key}_hi"]))
        rows.append(cells)
        classes.append("small" if is_small else "")
    header = [feature, "photos", "weighted recall [95%]"] + [f"recall {label} [95%]" for label in labels]
    return _table(header, rows, classes)


def _slices_section(view: EvaluationView, table: pd.DataFrame, small: int) -> str:
    parts = [
        f"<p>Recall per slice with TFMA's 95% confidence interval (jackknife) in brackets. Slices with fewer than "
        f"{small} photos are marked <span class=small>small</span>: their recall is mostly noise. "
        "A dash: the class is absent from the slice, or TFMA computed no interval.</p>"
    ]
    for feature in [OVERALL] + view.slice_features():
        parts.append(f"<h3>{_e(feature)}</h3>")
        if feature != OVERALL:
            parts.append(_slice_plot(f"slice plot {feature}", table, feature, small, f"weighted recall by {feature}"))
        parts.append(_slice_rows(table, feature, view.labels, small, CANDIDATE))
    return "".join(parts)


def _matrices_section(view: EvaluationView) -> str:
    parts = []
    overall = [
        _img(
            plots.to_data_uri(plots.confusion_heatmap(view.confusion_matrix(model=m), view.labels, f"overall, {m}")),
            f"confusion matrix overall {m}",
        )
        for m in ([CANDIDATE, BASELINE] if view.has_baseline else [CANDIDATE])
    ]
    parts.append("<h3>overall</h3><div class=grid>" + "".join(overall) + "</div>")
    for feature in view.slice_features():
        values = [v for f, v in view.slices() if f == feature]
        if len(values) > MAX_MATRICES_PER_FEATURE:
            parts.append(
                f"<h3>{_e(feature)}</h3><p class=muted>{len(values)} values: one matrix per value would be noise; "
                "see the worst slices in the gallery and the table above.</p>"
            )
            continue
        images = []
        for value in values:
            try:
                matrix = view.confusion_matrix(feature, value)
            except LookupError:
                continue
            images.append(
                _img(
                    plots.to_data_uri(plots.confusion_heatmap(matrix, view.labels, f"{feature}={value}")),
                    f"confusion matrix {feature}={value}",
                )
            )
        parts.append(f"<h3>{_e(feature)}</h3><div class=grid>{''.join(images)}</div>")
    return "".join(parts)


def _baseline_section(view: EvaluationView, table: pd.DataFrame, small: int) -> str:
    if not view.has_baseline:
        return "<p>No baseline: this is the first blessed model (or the gate ran without one).</p>"
    cand = table[table["model"] == CANDIDATE].set_index(["feature", "value"])
    base = table[table["model"] == BASELINE].set_index(["feature", "value"])
    rows, classes = [], []
    for key in cand.index:
        c = cand.loc[key]
        b = base.loc[key] if key in base.index else None
        delta = None if b is None else c["weighted_recall"] - b["weighted_recall"]
        is_small = not math.isnan(c["count"]) and c["count"] < small
        rows.append(
            [
                _e(key[0]),
                _e(key[1]),
                f"{c['count']:.0f}" + (" <b>small</b>" if is_small else ""),
                _interval(c["weighted_recall"], c["weighted_recall_lo"], c["weighted_recall_hi"]),
                "-" if b is None else _interval(b["weighted_recall"], b["weighted_recall_lo"], b["weighted_recall_hi"]),
                "-" if delta is None or math.isnan(delta) else f"{delta:+.4f}",
            ]
        )
        classes.append("small" if is_small else "")
    return "<p>Weighted recall per slice, candidate beside baseline, on the same eval photos.</p>" + _table(
        ["feature", "value", "photos", "candidate [95%]", "baseline [95%]", "delta"], rows, classes
    )


def _verdict_cell(check: Mapping[str, Any]) -> str:
    """'passed' or 'failed' (styled), then each of the check's reasons on a line of its own."""
    verdict = '<span class="pass">passed</span>' if check.get("passed") else '<span class="fail">failed</span>'
    return verdict + "".join("<br>" + _e(reason) for reason in check.get("reasons") or [])


def _variants_section(inputs: ReportInputs) -> str:
    manifest = inputs.manifest
    if not manifest:
        return f"<p>Not published: {_e(inputs.push_note or 'no manifest for this run')}.</p>"
    variants = manifest.get("variants") or {}
    labels = manifest.get("labels") or []
    rows = []
    for name, v in variants.items():
        agreement = v.get("agreement")
        count = v.get("eval_count")
        flips = "-"
        if agreement is not None and count:
            flips = f"{round((1.0 - float(agreement)) * int(count))} of {count}"
        recall = v.get("recall") or {}
        reference = v.get("savedmodel_recall") or {}
        per_class = "<br>".join(
            f"{_e(label)}: {_num(recall.get(label))} <span class=muted>(SavedModel {_num(reference.get(label))})</span>"
            for label in labels or sorted(recall)
        )
        verdict = _verdict_cell(v)
        rows.append(
            [
                _e(name) + (" (default)" if name == manifest.get("default_variant") else ""),
                verdict,
                "yes" if v.get("published") else "no",
                _num(agreement),
                flips,
                per_class,
                f"{(v.get('bytes') or 0) / 1e6:.2f} MB",
                f"{_num(v.get('latency_ms'), 3)} ms",
            ]
        )
    version = f"Version <code>{_e(manifest['version'])}</code>" if manifest.get("version") else "This version"
    head = (
        f"<p>{version} of <code>{_e(manifest.get('model_name', '?'))}"
        "</code>. Agreement: share of eval photos where the variant's top class equals the SavedModel's; flips: "
        "photos where it differs.</p>"
    )
    return head + _table(
        ["variant", "verification", "published", "agreement", "flips", "recall per class", "size", "latency"], rows
    )


def _live_section(inputs: ReportInputs) -> str:
    """Each variant against the model live at LATEST before this version: recall per class, regressions."""
    manifest = inputs.manifest
    if not manifest:
        return f"<p>Not published: {_e(inputs.push_note or 'no manifest for this run')}.</p>"
    block = manifest.get("live_gate") or {}
    results = block.get("variants") or {}
    if not results:
        return "<p>No comparison with a live model is recorded for this version.</p>"
    labels = manifest.get("labels") or []
    rows = []
    for name, r in results.items():
        live = r.get("live") or {}
        if r.get("status") != "compared":
            rows.append([_e(name), _e(r.get("status", "?")), _e(r.get("note", "")), "-", "-", "-"])
            continue
        recall = r.get("recall") or {}
        per_class = "<br>".join(
            f"{_e(label)}: {_num(c.get('candidate'))} "
            f"<span class=muted>(live {_num(c.get('live'))}, diff {_num(c.get('diff'))})</span>"
            for label in labels or sorted(recall)
            for c in [recall.get(label) or {}]
        )
        verdict = _verdict_cell(r)
        rows.append(
            [
                _e(name),
                verdict,
                f"<code>{_e(live.get('version'))}/{_e(live.get('file'))}</code>",
                per_class,
                f"{r.get('regressions', 0)} of {r.get('eval_count', 0)} ({_num(r.get('regression_fraction'), 3)})",
                str(r.get("improvements", 0)),
            ]
        )
    if not any(r.get("status") == "compared" for r in results.values()):
        return "<p>No variant was compared with a live model (the reason is on each row).</p>" + _table(
            ["variant", "vs live", "why not"], [row[:3] for row in rows]
        )
    head = (
        f"<p>Before publishing, each variant ran on the eval split next to the model that was live "
        f"(thresholds: recall drop per class at most {_num(block.get('max_recall_drop'), 3)}, regressions at most "
        f"{_num(block.get('max_regressions'), 3)} of the photos). Regressions: photos the live model gets right and "
        "the candidate wrong; improvements: the reverse.</p>"
    )
    return head + _table(["variant", "vs live", "live model", "recall per class", "regressions", "improvements"], rows)


def _worst_slices(table: pd.DataFrame, small: int, count: int = 5) -> list[tuple[str, str]]:
    part = table[(table["model"] == CANDIDATE) & (table["feature"] != OVERALL) & (table["count"] >= small)]
    part = part[part["weighted_recall"].notna()].sort_values("weighted_recall")
    return [(r["feature"], r["value"]) for _, r in part.head(count).iterrows()]


def _gallery_section(inputs: ReportInputs, table: pd.DataFrame) -> str:
    if not inputs.model_uri or not inputs.examples_uri:
        return "<p>No gallery: the run's model or examples are unknown.</p>"
    from report import examples

    worst = _worst_slices(table, inputs.small_slice)
    photos, wrong, read = examples.misclassified(
        inputs.model_uri, inputs.examples_uri, limit=inputs.gallery_count, prefer=worst, loaded=inputs.model
    )
    worst_text = ", ".join(f"{f}={v}" for f, v in worst) or f"none with at least {inputs.small_slice} photos"
    head = (
        f"<p>{wrong} of {read} eval photos misclassified by the candidate SavedModel; showing {len(photos)}, "
        f"from the worst slices first ({_e(worst_text)}), then the most confident mistakes.</p>"
    )
    cards = []
    for p in photos:
        image = _img(plots.image_data_uri(p.thumbnail), p.record) if p.thumbnail else "<i>no thumbnail</i>"
        cards.append(
            f"<div class=card>{image}<b>true {_e(p.true_label)}</b>, predicted <b>{_e(p.predicted)}</b> "
            f"({p.probability:.2f}; true {p.true_probability:.2f})<br>lane {_e(p.lane_id)}, {_e(p.device_id)}, "
            f"{_e(p.lighting or '-')}<br><span class=muted>{_e(p.record)}</span></div>"
        )
    return head + "<div class=grid>" + "".join(cards) + "</div>"


def _counts_table(counts: Mapping[str, Mapping[str, int]], key_name: str, labels: Sequence[str]) -> str:
    rows = []
    for key, per_class in counts.items():
        rows.append([_e(key)] + [str(per_class.get(label, 0)) for label in labels] + [str(sum(per_class.values()))])
    return _table([key_name] + list(labels) + ["total"], rows)


def _data_section(inputs: ReportInputs, labels: Sequence[str]) -> str:
    parts = []
    if inputs.examples_uri:

        def counts() -> str:
            from report import examples

            found = examples.count_examples(inputs.examples_uri)
            spans = ", ".join(str(s) for s in inputs.spans or []) or "?"
            out = [f"<p>{found['total']} photos in spans {_e(spans)} (ExampleGen <code>{_e(inputs.examples_uri)}"]
            out.append("</code>).</p><h3>by split and class</h3>")
            out.append(_counts_table(found["splits"], "split", labels))
            for key in ("device_id", "lighting"):
                out.append(f"<h3>by {key}</h3>")
                out.append(_img(plots.to_data_uri(plots.counts_bar(found[key], f"photos by {key}")), f"by {key}"))
            lanes = found["lane_id"]
            out.append(f"<h3>by lane_id ({len(lanes)} lanes)</h3>")
            out.append(_img(plots.to_data_uri(plots.counts_bar(lanes, "photos by lane_id")), "by lane"))
            return "".join(out)

        parts.append(_guarded("data counts", counts))
    else:
        parts.append("<p>The run's examples are unknown: no counts.</p>")

    def anomalies() -> str:
        if not inputs.anomalies_uri:
            return "<h3>anomalies</h3><p>No ExampleValidator output for this run.</p>"
        from report import examples

        found = examples.read_anomalies(inputs.anomalies_uri)
        rows = [[_e(split), "<br>".join(_e(x) for x in lines) or "none"] for split, lines in found.items()]
        return "<h3>anomalies (ExampleValidator)</h3>" + _table(["split", "anomalies"], rows)

    parts.append(_guarded("anomalies", anomalies))

    def drift() -> str:
        if not inputs.drift_uri:
            return "<h3>drift</h3><p>No SpanDrift output for this run.</p>"
        from shelf_data.drift_report import DriftReport, read_report

        raw = read_report(inputs.drift_uri)
        if raw is None:
            return f"<h3>drift</h3><p>No drift.json in <code>{_e(inputs.drift_uri)}</code>.</p>"
        report = DriftReport.from_dict(raw)
        rows = [['<span class="fail">DRIFT</span>' if c.drifted else "ok", _e(c.describe())] for c in report.checks]
        return f"<h3>drift</h3><p>{_e(report.headline())}</p>" + (_table(["", "check"], rows) if rows else "")

    parts.append(_guarded("drift", drift))
    parts.append(_guarded("bad records", lambda: _bad_records(inputs)))
    return "".join(parts)


def _bad_records(inputs: ReportInputs) -> str:
    title = "<h3>dropped records (bad photos)</h3>"
    if not inputs.examples_uri:
        return title + "<p>The run's examples are unknown.</p>"
    try:
        from shelf_data.bad_records import read_bad_records
    except ImportError:
        return title + "<p>This version of the pipeline has no bad-record check.</p>"
    report = read_bad_records(inputs.examples_uri)
    if report is None:
        return title + "<p>No data-quality step ran for these examples (no bad_records.json).</p>"
    parts = [
        title,
        f"<p>{report.get('dropped', 0)} of {report.get('read', 0)} records dropped (limit "
        f"{float(report.get('max_bad_fraction', 0)):.2%} per split) under <code>{_e(report.get('input_base', ''))}"
        "</code>.</p>",
    ]
    by_split = report.get("by_split") or {}
    parts.append(
        _table(
            ["split", "read", "dropped", "fraction"],
            [
                [_e(s), str(v.get("read", 0)), str(v.get("dropped", 0)), f"{float(v.get('fraction', 0)):.2%}"]
                for s, v in by_split.items()
            ],
        )
    )
    if report.get("by_reason"):
        parts.append(_table(["reason", "records"], [[_e(k), str(v)] for k, v in report["by_reason"].items()]))
    records = report.get("records") or []
    if records:
        shown = records[:50]
        parts.append(
            _table(
                ["file", "record", "split", "reason", "lane", "device"],
                [
                    [
                        _e(r.get("file", "")),
                        str(r.get("index", "")),
                        _e(r.get("split", "")),
                        _e(r.get("reason", "")),
                        _e(r.get("lane_id", "")),
                        _e(r.get("device_id", "")),
                    ]
                    for r in shown
                ],
            )
        )
        if len(records) > len(shown):
            parts.append(f"<p class=muted>{len(records) - len(shown)} more in bad_records.json.</p>")
    return "".join(parts)


# -- the document ---------------------------------------------------------------


def _document(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class=muted>{subtitle}</p><nav>{links}</nav>\n{body}</body></html>\n"
    )


def build_html(inputs: ReportInputs) -> str:
    """The report of one run as one self-contained HTML string.

    Raises:
        FileNotFoundError: the evaluation folder holds no TFMA output (the one input the report needs).
    """
    view = load_evaluation(inputs.evaluation_uri)
    table = view.slice_table()
    small = inputs.small_slice
    sections = [
        ("verdict", "Verdict and gate", lambda: _verdict_section(view, inputs)),
        ("slices", "Recall per slice", lambda: _slices_section(view, table, small)),
        ("confusion", "Confusion matrices", lambda: _matrices_section(view)),
        ("baseline", "Candidate vs baseline per slice", lambda: _baseline_section(view, table, small)),
        ("variants", "TFLite variants vs the SavedModel", lambda: _variants_section(inputs)),
        ("live", "Variants vs the live model", lambda: _live_section(inputs)),
        ("gallery", "Misclassified eval photos", lambda: _gallery_section(inputs, table)),
        ("data", "The data", lambda: _data_section(inputs, view.labels)),
    ]
    body = "".join(_section(anchor, title, _guarded(anchor, func)) for anchor, title, func in sections)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"pipeline {_e(inputs.pipeline_name or '?')} &middot; run {_e(inputs.run_id or '?')} &middot; written {created}"
    )
    return _document("Shelf Audit run report", subtitle, [(a, t) for a, t, _ in sections], body)


def write_report(inputs: ReportInputs, out_path: str) -> str:
    """Build the report and write it to ``out_path`` (local or gs://, folders made); return the path."""
    import tensorflow as tf

    text = build_html(inputs)
    folder = os.path.dirname(out_path)
    if folder:
        tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(out_path, "w") as f:
        f.write(text)
    return out_path


# -- comparing two runs or versions ----------------------------------------------


@dataclasses.dataclass
class CompareSide:
    """One side of ``report --compare``: a name, its evaluation when it could be found, else the manifest's metrics."""

    name: str
    view: EvaluationView | None = None
    gate_metrics: dict | None = None  # the manifest's gate_metrics, when there is no evaluation
    note: str = ""


def build_compare_html(a: CompareSide, b: CompareSide, small_slice: int = plots.DEFAULT_SMALL_SLICE) -> str:
    """Slice metrics of two runs or versions side by side, as one self-contained HTML string."""
    parts = []
    for side in (a, b):
        if side.note:
            parts.append(f"<p class=note>{_e(side.name)}: {_e(side.note)}</p>")
    if a.view is not None and b.view is not None:
        ta = a.view.slice_table()
        tb = b.view.slice_table()
        ta = ta[ta["model"] == CANDIDATE].assign(model=CANDIDATE)
        tb = tb[tb["model"] == CANDIDATE].assign(model=BASELINE)
        both = pd.concat([ta, tb], ignore_index=True)
        ia = ta.set_index(["feature", "value"])
        ib = tb.set_index(["feature", "value"])
        keys = list(dict.fromkeys(list(ia.index) + list(ib.index)))
        labels = a.view.labels
        rows, classes = [], []
        for key in keys:
            ra = ia.loc[key] if key in ia.index else None
            rb = ib.loc[key] if key in ib.index else None
            cells = [_e(key[0]), _e(key[1])]
            for r in (ra, rb):
                cells.append("-" if r is None else f"{r['count']:.0f}")
                cells.append("-" if r is None else _recall_cell(r))
            delta = None
            if ra is not None and rb is not None:
                delta = rb["weighted_recall"] - ra["weighted_recall"]
            cells.append("-" if delta is None or math.isnan(delta) else f"{delta:+.4f}")
            for label in labels:
                va = None if ra is None else ra[f"recall/{label}"]
                vb = None if rb is None else rb[f"recall/{label}"]
                cells.append(f"{_num(va)} / {_num(vb)}")
            rows.append(cells)
            small = any(r is not None and r["count"] < small_slice for r in (ra, rb))
            classes.append("small" if small else "")
        header = ["feature", "value", f"n {a.name}", f"weighted recall {a.name}", f"n {b.name}"]
        header += [f"weighted recall {b.name}", "delta (B - A)"] + [f"recall {label} A / B" for label in labels]
        parts.append(
            f"<p>A = <code>{_e(a.name)}</code>, B = <code>{_e(b.name)}</code>. In the plots A is blue "
            "('candidate'), B orange ('baseline'). 95% intervals in brackets.</p>"
        )
        parts.append(_table(header, rows, classes))
        for feature in a.view.slice_features():
            parts.append(f"<h3>{_e(feature)}</h3>")
            parts.append(
                _slice_plot(
                    f"compare plot {feature}", both, feature, small_slice, f"weighted recall by {feature}, A vs B"
                )
            )
    else:
        parts.append("<p>At least one side has no TFMA evaluation to read: overall gate metrics only.</p>")
        rows = []
        names = sorted(
            set(_overall_of(a).keys()) | set(_overall_of(b).keys()),
        )
        for name in names:
            va, vb = _overall_of(a).get(name), _overall_of(b).get(name)
            delta = None if va is None or vb is None else vb - va
            rows.append([_e(name), _num(va), _num(vb), "-" if delta is None else f"{delta:+.4f}"])
        parts.append(_table(["metric (overall slice)", a.name, b.name, "delta (B - A)"], rows))
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _document(
        f"Shelf Audit: {a.name} vs {b.name}", f"written {created}", [], _section("compare", "Slices", "".join(parts))
    )


def _recall_cell(row: Any) -> str:
    return _interval(row["weighted_recall"], row["weighted_recall_lo"], row["weighted_recall_hi"])


def _overall_of(side: CompareSide) -> dict[str, float]:
    if side.view is not None:
        return {name: m.value for name, m in side.view.metrics().items()}
    metrics = side.gate_metrics or {}
    found = {k: v for k, v in (metrics.get("overall") or {}).items() if isinstance(v, (int, float))}
    for label, values in (metrics.get("per_class") or {}).items():
        if isinstance(values.get("recall"), (int, float)):
            found[f"recall/{label}"] = values["recall"]
    return found
