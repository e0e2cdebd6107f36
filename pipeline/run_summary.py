"""What a finished run did, read back from ML Metadata and the Evaluator's output.

Used by ``shelf-audit run`` for its closing summary and by the end-to-end
tests, so the summary shows exactly what the tests assert on.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from pipeline.lineage import custom_property
from pipeline.metadata_store import PIPELINE_RUN_CONTEXT, run_pipeline_root
from report import split_stats
from report.tfma_reader import GateRow, load_evaluation
from shelf_data import bad_records
from shelf_data.drift_report import DriftReport, read_report
from shelf_data.spans import format_spans
from shelf_data.window import SPANS_PROPERTY

# Slices smaller than this are too noisy to call "worst"; they stay in the TFMA output.
MIN_SLICE_EXAMPLES = 30
_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One component execution of the run."""

    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, ...
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]]
    execution_id: int = 0  # the ML Metadata execution
    started: float = 0.0  # when the execution was created, epoch seconds


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """The outcome of one pipeline run."""

    run_id: str
    stages: list[Stage]
    blessed: bool | None  # None when the Evaluator did not run
    gate: list[GateRow]
    worst_slices: list[tuple[str, float, float]]  # (slice, weighted recall, example count)
    failures: list[str]
    evaluation_uri: str | None
    pushed: dict[str, Any] | None
    # ExampleGen's artifacts of this run (what the model was trained and evaluated on), by span.
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # SpanDrift's drift.json (components/drift.py), when it ran.
    drift: dict[str, Any] | None = None
    # Split ratios, grouping, seed and photos per split and class (report/split_stats.py).
    splits: dict[str, Any] | None = None

    @property
    def spans(self) -> list[int]:
        """The spans the run's model was trained and evaluated on, ascending."""
        return sorted({s for e in self.examples for s in e.get("spans") or [e["span"]] if s is not None})

    def data_quality(self) -> tuple[dict[str, Any] | None, str]:
        """ExampleGen's ``bad_records.json`` of this run and its path; ``(None, "")`` when no data-quality step ran."""
        for e in self.examples:
            report = bad_records.read_bad_records(e["uri"])
            if report is not None:
                return report, bad_records.bad_records_path(e["uri"])
        return None, ""

    def stage(self, node_id: str) -> Stage | None:
        """The stage of ``node_id``, if it ran."""
        return next((s for s in self.stages if s.node_id == node_id), None)


def _spans_read(artifact: metadata_store_pb2.Artifact) -> list[int]:
    """Every span an ExampleGen artifact holds: the ``spans`` property of a window (3,4,5), else ``span``."""
    text = custom_property(artifact, SPANS_PROPERTY)
    if text:
        return [int(s) for s in str(text).split(",") if s.strip()]
    span = custom_property(artifact, "span")
    return [] if span is None else [int(span)]


def read_examples(stages: list[Stage]) -> list[dict[str, Any]]:
    """ExampleGen's ``examples`` artifacts among the stages' outputs (those with a ``span``), by span.

    Each: ``node_id``, ``artifact_id``, ``span``, ``version``, ``input_fingerprint``, ``uri``.
    """
    found = []
    for stage in stages:
        for artifact in stage.outputs.get("examples", []):
            if "span" in artifact.custom_properties:
                found.append(
                    {
                        "node_id": stage.node_id,
                        "artifact_id": artifact.id,
                        "span": custom_property(artifact, "span"),  # TFX's: the newest span of a window
                        "spans": _spans_read(artifact),
                        "version": custom_property(artifact, "version"),
                        "input_fingerprint": custom_property(artifact, "input_fingerprint"),
                        "uri": artifact.uri,
                    }
                )
    return sorted(found, key=lambda e: (e["span"], e["artifact_id"]))


def read_stages(
    store: Any, pipeline_name: str, run_id: str | None = None, pipeline_root: str | None = None
) -> tuple[str, list[Stage]]:
    """Executions of one run of ``pipeline_name``, in execution order.

    The run is ``run_id`` if given, else the latest run from ``pipeline_root`` if given
    (several homes may share one store), else the latest run.
    """
    which = f"run {run_id} of " if run_id else "run of "
    where = f" from {os.path.abspath(pipeline_root)}" if pipeline_root else ""
    missing = f"no {which}pipeline {pipeline_name}{where} in ML Metadata"
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        raise LookupError(missing)
    ours = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    if run_id:
        candidates = [c for c in [store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)] if c is not None]
    else:
        candidates = store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
    if pipeline_root:
        root = os.path.abspath(pipeline_root)
        candidates = [c for c in candidates if run_pipeline_root(c) == root]
    runs = [c for c in candidates if any(e.id in ours for e in store.get_executions_by_context(c.id))]
    if not runs:
        raise LookupError(missing)
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    node_of = {}
    for ctx in store.get_contexts_by_type("node"):
        for execution in store.get_executions_by_context(ctx.id):
            node_of[execution.id] = ctx.name.split(".", 1)[-1]
    stages = []
    for execution in executions:
        outputs: dict[str, list[metadata_store_pb2.Artifact]] = {}
        events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type == e.OUTPUT]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])} if events else {}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        seconds = max(0.0, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000)
        stages.append(
            Stage(
                node_of.get(execution.id, str(execution.id)),
                _STATES[execution.last_known_state],
                seconds,
                outputs,
                execution.id,
                execution.create_time_since_epoch / 1000,
            )
        )
    return run.name, stages


def read_gate(
    evaluation_uri: str, eval_config: tfma.EvalConfig | None = None
) -> tuple[list[GateRow], list[tuple[str, float, float]], list[str]]:
    """Gate rows on the overall slice, the worst slices by weighted recall, and validation failures.

    Read with the report's TFMA reader (:mod:`report.tfma_reader`), without the plots;
    ``eval_config`` (the gate's) names the thresholds, else the one TFMA saved with its output.
    """
    view = load_evaluation(evaluation_uri, plots=False, eval_config=eval_config)
    return view.gate_rows(), view.worst_slices(MIN_SLICE_EXAMPLES), list(view.failures)


def summarize(
    connection_config: Any,
    pipeline_name: str,
    eval_config: tfma.EvalConfig,
    run_id: str | None = None,
    pipeline_root: str | None = None,
    split_settings: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Read one run of ``pipeline_name`` from ML Metadata (see :func:`read_stages` for which).

    ``connection_config`` comes from :func:`pipeline.metadata_store.connection_config`;
    ``split_settings`` (``{"buckets", "partition_feature", "seed"}``) adds the split table.
    """
    with metadata.Metadata(connection_config) as m:
        run_id, stages = read_stages(m.store, pipeline_name, run_id=run_id, pipeline_root=pipeline_root)
    blessed = evaluation_uri = pushed = drift = splits = None
    gate: list[GateRow] = []
    worst: list[tuple[str, float, float]] = []
    failures: list[str] = []
    for stage in stages:
        if "blessing" in stage.outputs and "evaluation" in stage.outputs:
            blessed = bool(custom_property(stage.outputs["blessing"][0], "blessed"))
            evaluation_uri = stage.outputs["evaluation"][0].uri
            gate, worst, failures = read_gate(evaluation_uri, eval_config)
        if "pushed_model" in stage.outputs:
            artifact = stage.outputs["pushed_model"][0]
            pushed = {k: custom_property(artifact, k) for k in artifact.custom_properties}
        if "drift" in stage.outputs:
            drift = read_report(stage.outputs["drift"][0].uri)
        if "statistics" in stage.outputs and split_settings:
            buckets = split_settings["buckets"]
            counts = split_stats.read_split_counts(stage.outputs["statistics"][0].uri, list(buckets))
            splits = split_stats.split_record(
                buckets, split_settings["partition_feature"], split_settings["seed"], counts
            )
    return RunSummary(
        run_id, stages, blessed, gate, worst, failures, evaluation_uri, pushed, read_examples(stages), drift, splits
    )


def tensorboard_logdir(summary: RunSummary) -> str | None:
    """The TensorBoard log folder of the run's model: ``<Trainer model_run artifact>/logs``.

    The Trainer's Keras TensorBoard callback writes ``train/`` and ``validation/``
    event files there (``shelf_model/trainer.py``). A run that reused a cached
    Trainer points at the run that trained the model. None when no Trainer ran.
    """
    for stage in summary.stages:
        for artifact in stage.outputs.get("model_run", []):
            return os.path.join(artifact.uri, "logs")
    return None


def tensorboard_command(logdir: str) -> str:
    """The shell command that serves ``logdir``: the venv's ``tensorboard`` next to this Python, if there."""
    beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    exe = beside if os.access(beside, os.X_OK) else "tensorboard"
    return f"{shlex.quote(exe)} --logdir {shlex.quote(logdir)}"


def format_summary(summary: RunSummary) -> str:
    """The closing report printed by ``shelf-audit run``."""
    lines = [f"run {summary.run_id}", "", "stage                              state      seconds"]
    for s in summary.stages:
        lines.append(f"  {s.node_id:<33}{s.state:<11}{s.seconds:8.1f}")
    lines.append(f"  {'total':<44}{sum(s.seconds for s in summary.stages):8.1f}")
    if summary.examples:
        lines += ["", "trained and evaluated on spans " + format_spans(summary.spans)]
        for e in summary.examples:
            read = e.get("spans") or [e["span"]]
            label = f"span {read[0]}" if len(read) == 1 else f"spans {format_spans(read)}"
            lines.append(
                f"  {label}: {e['node_id']} examples artifact {e['artifact_id']}, {e['uri']}"
                f" (input {e['input_fingerprint'] or '-'})"
            )
    dropped = bad_records.summary_line(*summary.data_quality())
    if dropped:  # photos ExampleGen dropped (below data.max_bad_fraction): the run went on without them
        lines += ["", dropped]
    if summary.splits:
        lines += ["", split_stats.format_split_table(summary.splits)]
    if summary.drift:
        report = DriftReport.from_dict(summary.drift)
        lines += ["", report.headline()]
        lines += [f"  {'DRIFT' if c.drifted else 'ok':<6}{c.describe()}" for c in report.checks]
    if summary.gate:
        lines += ["", "gate (overall slice)      value   threshold                    pass  vs baseline"]
        for r in summary.gate:
            delta = "" if r.delta is None else f"{r.delta:+.4f}"
            value = f"{r.value:.0f}" if r.metric == "example_count" else f"{r.value:.4f}"
            mark = "yes" if r.passed else "NO"
            lines.append(f"  {r.metric:<22}{value:>8}   {r.threshold:<29}{mark:<6}{delta}")
    if summary.worst_slices:
        lines += ["", f"worst slices by weighted recall (slices of at least {MIN_SLICE_EXAMPLES} photos)"]
        lines += [f"  {name:<30}{value:.4f}  (n={count:.0f})" for name, value, count in summary.worst_slices]
    lines.append("")
    if summary.blessed is None:
        lines.append("verdict: the Evaluator did not run")
    elif summary.blessed:
        lines.append("verdict: BLESSED")
    else:
        lines.append("verdict: NOT blessed: " + ("; ".join(summary.failures) or "see the Evaluator output"))
    if summary.evaluation_uri:
        lines.append(f"evaluation (TFMA output): {summary.evaluation_uri}")
    logdir = tensorboard_logdir(summary)
    if logdir:
        lines.append(f"tensorboard: {tensorboard_command(logdir)}")
    if summary.pushed:
        p = summary.pushed
        if p.get("pushed"):
            lines.append(f"published: {p.get('pushed_model_file') or p.get('pushed_destination')}")
            lines.append(
                f"  version {p.get('pushed_version')}, variant {p.get('pushed_variant')}, "
                f"{(p.get('pushed_bytes') or 0) / 1e6:.2f} MB, host latency {p.get('pushed_latency_ms')} ms (1 thread)"
            )
            if p.get("pushed_live_gate"):  # the default variant against the model that was live
                lines.append(f"  {p['pushed_live_gate']}")
            lines.append(f"  {p.get('pushed_reason', '')}")
        else:
            lines.append(f"not published: {p.get('pushed_reason') or ''}")
    return "\n".join(line.rstrip() for line in lines)
