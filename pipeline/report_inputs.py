"""Find a run's artifacts in a home's ML Metadata, as :class:`report.build.ReportInputs`.

``shelf-audit report`` and the end of ``shelf-audit run`` use it. Without a
config the home's SQLite store is read (``<home>/metadata.sqlite``) and the
run is looked for among the runs whose pipeline root is ``<home>/pipeline_root``;
with a config, its ``[metadata]`` section (SQLite or shared MySQL) and its
pipeline name are used.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pipeline.lineage import custom_property
from pipeline.metadata_store import PIPELINE_RUN_CONTEXT, run_pipeline_root
from report.build import REPORT_FILE, ReportInputs

MANIFEST_FILE = "manifest.json"


class RunNotFound(LookupError):
    """No run matches (the message names the home and the run)."""


def _latest_pipeline(store: Any, pipeline_root: str, run: str) -> tuple[str, str]:
    """``(pipeline name, run id)`` of ``run`` (or the latest run) under ``pipeline_root``."""
    if run == "latest":
        candidates = [
            c for c in store.get_contexts_by_type(PIPELINE_RUN_CONTEXT) if run_pipeline_root(c) in (None, pipeline_root)
        ]
        labelled = [c for c in candidates if run_pipeline_root(c) == pipeline_root]
        candidates = labelled or candidates
    else:
        found = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run)
        candidates = [found] if found is not None else []
    for context in sorted(candidates, key=lambda c: (c.create_time_since_epoch, c.id), reverse=True):
        for execution in store.get_executions_by_context(context.id):
            for ctx in store.get_contexts_by_execution(execution.id):
                if store.get_context_types_by_id([ctx.type_id])[0].name == "pipeline":
                    return ctx.name, context.name
    raise RunNotFound(f"no run {run!r} under {pipeline_root} in its ML Metadata")


def find_run(home: str, run: str = "latest", config_path: str | None = None) -> ReportInputs:
    """The artifacts of one run of the home (``run`` = ``latest`` or a run id) for the HTML report.

    Raises:
        RunNotFound: no such run, or the run has no Evaluator output (the message says which).
        FileNotFoundError: the home has no ML Metadata.
    """
    from tfx.orchestration import metadata

    from pipeline import metadata_store, run_summary

    home = os.path.abspath(home)
    pipeline_root = os.path.join(home, "pipeline_root")
    bucket_default = os.path.join(home, "bucket")
    if config_path:
        from pipeline import config as config_lib

        config = config_lib.load(config_path)
        password = metadata_store.password_from_env(config.metadata, os.environ)
        connection = metadata_store.connection_config(config.metadata, home, password)
        pipeline_name: str | None = config.name
    else:
        sqlite = os.path.join(home, metadata_store.SQLITE_FILE)
        if not os.path.exists(sqlite):
            raise FileNotFoundError(f"no ML Metadata at {sqlite}: is {home} a run home? (or pass --config)")
        connection = metadata.sqlite_metadata_connection_config(sqlite)
        pipeline_name = None
    with metadata.Metadata(connection) as m:
        if pipeline_name is None:
            pipeline_name, run_id = _latest_pipeline(m.store, pipeline_root, run)
        else:
            run_id = None if run == "latest" else run
        try:
            run_id, stages = run_summary.read_stages(
                m.store, pipeline_name, run_id=run_id, pipeline_root=pipeline_root if run == "latest" else None
            )
        except LookupError as e:
            raise RunNotFound(f"{e} (home {home})") from e
    return inputs_from_stages(stages, run_id, pipeline_name, bucket_default)


def inputs_from_stages(stages: list[Any], run_id: str, pipeline_name: str, bucket: str | None = None) -> ReportInputs:
    """ReportInputs from a run's stages (:func:`pipeline.run_summary.read_stages`).

    Raises:
        RunNotFound: the run has no Evaluator output.
    """
    from pipeline import run_summary

    found: dict[str, Any] = {}
    push_note = None
    manifest = None
    for stage in stages:
        outputs = stage.outputs
        if "evaluation" in outputs:
            found["evaluation_uri"] = outputs["evaluation"][0].uri
        if "blessing" in outputs:
            found["blessing_uri"] = outputs["blessing"][0].uri
        if "model" in outputs:
            found["model_uri"] = outputs["model"][0].uri
        if "statistics" in outputs and stage.node_id.startswith("StatisticsGen"):
            found["statistics_uri"] = outputs["statistics"][0].uri
        if "anomalies" in outputs:
            found["anomalies_uri"] = outputs["anomalies"][0].uri
        if "drift" in outputs:
            found["drift_uri"] = outputs["drift"][0].uri
        if "pushed_model" in outputs:
            artifact = outputs["pushed_model"][0]
            if custom_property(artifact, "pushed"):
                manifest = _read_manifest(artifact.uri)
                if manifest is None:
                    push_note = f"published, but no manifest copy in {artifact.uri}"
            else:
                push_note = custom_property(artifact, "pushed_reason") or "the pusher did not publish"
    if "evaluation_uri" not in found:
        states = ", ".join(f"{s.node_id} {s.state}" for s in stages) or "no stages"
        raise RunNotFound(f"run {run_id} of {pipeline_name} has no Evaluator output ({states})")
    if manifest is None and push_note is None:
        push_note = "the pusher did not run"
    examples = run_summary.read_examples(stages)
    spans = sorted({s for e in examples for s in (e.get("spans") or [e["span"]]) if s is not None})
    return ReportInputs(
        examples_uri=examples[-1]["uri"] if examples else None,
        manifest=manifest,
        run_id=run_id,
        pipeline_name=pipeline_name,
        push_note=push_note,
        spans=spans or None,
        **found,
    )


def _read_manifest(pushed_uri: str) -> dict | None:
    """The manifest copy the pusher keeps with its ``pushed_model`` artifact."""
    import tensorflow as tf

    path = os.path.join(pushed_uri, MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def report_path(home: str, run_id: str) -> str:
    """``<home>/reports/<run id>/report.html`` (run ids are timestamps; ``:`` is kept, it is valid on POSIX)."""
    return os.path.join(os.path.abspath(home), "reports", run_id, "report.html")


def write_run_report(summary: Any, home: str, pipeline_name: str) -> str:
    """Write ``<home>/reports/<run id>/report.html`` for a finished run (:class:`pipeline.run_summary.RunSummary`).

    Raises:
        RunNotFound: the run has no Evaluator output (it stopped before the gate).
        Exception: whatever reading the artifacts raised; ``shelf-audit run`` logs it as a warning.
    """
    from report.build import write_report

    out_path = report_path(home, summary.run_id)
    published = _published_report(summary.stages)
    if published:
        # The pusher built this run's report and published it with the version: the same page.
        import tensorflow as tf

        tf.io.gfile.makedirs(os.path.dirname(out_path))
        tf.io.gfile.copy(published, out_path, overwrite=True)
        return out_path
    inputs = inputs_from_stages(summary.stages, summary.run_id, pipeline_name)
    return write_report(inputs, out_path)


def _published_report(stages: list[Any]) -> str | None:
    """The copy of ``report.html`` the pusher keeps with a ``pushed`` artifact, if any."""
    import tensorflow as tf

    for stage in stages:
        for artifact in stage.outputs.get("pushed_model", []):
            path = os.path.join(artifact.uri, REPORT_FILE)
            if custom_property(artifact, "pushed") and tf.io.gfile.exists(path):
                return path
    return None
