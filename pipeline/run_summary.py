"""What a finished run did, read back from ML Metadata and the Evaluator's output.

Used by ``shelf-audit run`` for its closing summary and by the end-to-end
tests, so the summary shows exactly what the tests assert on.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from pipeline.eval_config import WEIGHTED_RECALL, class_recall_name
from shelf_data.contract import LABELS

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


@dataclasses.dataclass(frozen=True)
class GateRow:
    """One gate metric on the overall slice."""

    metric: str
    value: float
    threshold: str
    passed: bool
    baseline_delta: float | None


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

    def stage(self, node_id: str) -> Stage | None:
        """The stage of ``node_id``, if it ran."""
        return next((s for s in self.stages if s.node_id == node_id), None)


def _custom(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def read_stages(store: Any, pipeline_name: str) -> tuple[str, list[Stage]]:
    """Executions of the latest run of ``pipeline_name``, in execution order."""
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        raise LookupError(f"no run of pipeline {pipeline_name} in ML Metadata")
    ours = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [
        c
        for c in store.get_contexts_by_type("pipeline_run")
        if any(e.id in ours for e in store.get_executions_by_context(c.id))
    ]
    if not runs:
        raise LookupError(f"no run of pipeline {pipeline_name} in ML Metadata")
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
            Stage(node_of.get(execution.id, str(execution.id)), _STATES[execution.last_known_state], seconds, outputs)
        )
    return run.name, stages


def _bound(threshold: Any) -> str:
    parts = []
    if threshold.value_threshold.HasField("lower_bound"):
        parts.append(f">= {threshold.value_threshold.lower_bound.value:.3f}")
    if threshold.HasField("change_threshold"):
        parts.append(f"drop <= {-threshold.change_threshold.absolute.value:.3f}")
    return ", ".join(parts)


def read_gate(
    evaluation_uri: str, eval_config: tfma.EvalConfig
) -> tuple[list[GateRow], list[tuple[str, float, float]], list[str]]:
    """Gate rows on the overall slice, the worst slices by weighted recall, and validation failures."""
    thresholds: dict[str, Any] = {}
    for spec in eval_config.metrics_specs:
        for m in spec.metrics:
            for pst in m.per_slice_thresholds:
                thresholds[json.loads("{" + m.config + "}")["name"]] = pst.threshold
    overall: dict[str, float] = {}
    baseline_delta: dict[str, float] = {}
    slices: list[tuple[str, float, float]] = []
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        slice_key = tfma.slicer.deserialize_slice_key(metrics_for_slice.slice_key)
        values: dict[str, float] = {}
        for kv in metrics_for_slice.metric_keys_and_values:
            if kv.key.model_name == "baseline" or not kv.value.HasField("double_value"):
                continue
            if kv.key.is_diff:
                if slice_key == ():
                    baseline_delta[kv.key.name] = kv.value.double_value.value
                continue
            values[kv.key.name] = kv.value.double_value.value
        if slice_key == ():
            overall = values
        elif (
            WEIGHTED_RECALL in values
            and not math.isnan(values[WEIGHTED_RECALL])
            and values.get("example_count", 0) >= MIN_SLICE_EXAMPLES
        ):
            label = ", ".join(f"{k}={v}" for k, v in slice_key)
            slices.append((label, values[WEIGHTED_RECALL], values.get("example_count", float("nan"))))
    validation = tfma.load_validation_result(evaluation_uri)
    failed = {f.metric_key.name for s in validation.metric_validations_per_slice for f in s.failures}
    failures = [
        f"{f.metric_key.name}{' (vs baseline)' if f.metric_key.is_diff else ''}: "
        f"{f.metric_value.double_value.value:.4f} ({f.message or 'threshold not met'})"
        for s in validation.metric_validations_per_slice
        for f in s.failures
    ]
    names = [WEIGHTED_RECALL] + [class_recall_name(label) for label in LABELS] + ["accuracy", "example_count"]
    rows = [
        GateRow(
            metric=name,
            value=overall.get(name, float("nan")),
            threshold=_bound(thresholds[name]) if name in thresholds else "",
            passed=name not in failed,
            baseline_delta=baseline_delta.get(name),
        )
        for name in names
        if name in overall
    ]
    return rows, sorted(slices, key=lambda s: s[1])[:5], failures


def summarize(connection_config: Any, pipeline_name: str, eval_config: tfma.EvalConfig) -> RunSummary:
    """Read the latest run of ``pipeline_name`` from ML Metadata."""
    with metadata.Metadata(connection_config) as m:
        run_id, stages = read_stages(m.store, pipeline_name)
    blessed = evaluation_uri = pushed = None
    gate: list[GateRow] = []
    worst: list[tuple[str, float, float]] = []
    failures: list[str] = []
    for stage in stages:
        if "blessing" in stage.outputs and "evaluation" in stage.outputs:
            blessed = bool(_custom(stage.outputs["blessing"][0], "blessed"))
            evaluation_uri = stage.outputs["evaluation"][0].uri
            gate, worst, failures = read_gate(evaluation_uri, eval_config)
        if "pushed_model" in stage.outputs:
            artifact = stage.outputs["pushed_model"][0]
            pushed = {k: _custom(artifact, k) for k in artifact.custom_properties}
    return RunSummary(run_id, stages, blessed, gate, worst, failures, evaluation_uri, pushed)


def format_summary(summary: RunSummary) -> str:
    """The closing report printed by ``shelf-audit run``."""
    lines = [f"run {summary.run_id}", "", "stage                              state      seconds"]
    for s in summary.stages:
        lines.append(f"  {s.node_id:<33}{s.state:<11}{s.seconds:8.1f}")
    lines.append(f"  {'total':<44}{sum(s.seconds for s in summary.stages):8.1f}")
    if summary.gate:
        lines += ["", "gate (overall slice)      value   threshold                    pass  vs baseline"]
        for r in summary.gate:
            delta = "" if r.baseline_delta is None else f"{r.baseline_delta:+.4f}"
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
    if summary.pushed:
        p = summary.pushed
        if p.get("pushed"):
            lines.append(f"published: {p.get('pushed_model_file') or p.get('pushed_destination')}")
            lines.append(
                f"  version {p.get('pushed_version')}, variant {p.get('pushed_variant')}, "
                f"{(p.get('pushed_bytes') or 0) / 1e6:.2f} MB, host latency {p.get('pushed_latency_ms')} ms (1 thread)"
            )
            lines.append(f"  {p.get('pushed_reason', '')}")
        else:
            lines.append(f"not published: {p.get('pushed_reason') or ''}")
    return "\n".join(line.rstrip() for line in lines)
