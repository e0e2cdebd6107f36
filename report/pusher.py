"""The report the TFLite pusher publishes with a version (``report.html`` beside ``model.tflite``).

Failure policy: the model gate has already passed when the pusher gets here,
so a report that cannot be built must not stop the publish. The error is
logged loudly (ERROR, with the traceback) and the version is published
without ``report.html``; the manifest then lists no report file. The report is
built in memory before ``bucket.publish.publish`` runs, so a failure can never
leave a half-written version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from report.build import REPORT_FILE, ReportInputs, build_html

log = logging.getLogger(__name__)


def _uri(input_dict: Mapping[str, Sequence[Any]], key: str) -> str | None:
    artifacts = input_dict.get(key) or []
    return artifacts[0].uri if artifacts else None


def report_files(
    input_dict: Mapping[str, Sequence[Any]],
    manifest: Mapping[str, Any],
    model_dir: str | None = None,
    model: Any = None,
) -> dict[str, bytes]:
    """``{"report.html": bytes}`` for ``bucket.publish.publish(extra_files=...)``, or ``{}`` when it failed (logged).

    Args:
        input_dict: the pusher's inputs: ``model``, ``model_blessing``, ``model_evaluation``,
            ``examples`` (ExampleGen's), ``statistics``, ``drift`` (each optional but the evaluation).
        manifest: the manifest about to be published (its variant checks go in the report).
        model_dir: the SavedModel folder (default: the ``model`` input's uri).
        model: that SavedModel already loaded (not loaded again for the gallery).
    """
    evaluation = _uri(input_dict, "model_evaluation")
    if not evaluation:
        log.error("TFLitePusher: no report.html for this version: the pusher has no model_evaluation input")
        return {}
    lineage = manifest.get("lineage") or {}
    examples = input_dict.get("examples") or []
    inputs = ReportInputs(
        evaluation_uri=evaluation,
        blessing_uri=_uri(input_dict, "model_blessing"),
        model_uri=model_dir or _uri(input_dict, "model"),
        model=model,
        examples_uri=examples[-1].uri if examples else None,
        statistics_uri=_uri(input_dict, "statistics"),
        anomalies_uri=_uri(input_dict, "anomalies"),
        drift_uri=_uri(input_dict, "drift"),
        manifest=dict(manifest),
        run_id=lineage.get("pipeline_run_id"),
        pipeline_name=lineage.get("pipeline_name"),
        spans=lineage.get("spans") or None,
    )
    started = time.time()
    try:
        data = build_html(inputs).encode("utf-8")
    except Exception:  # noqa: BLE001 - the gate passed: publish without the report, loudly
        log.exception(
            "TFLitePusher: the HTML report could not be built (evaluation %s); publishing WITHOUT report.html",
            evaluation,
        )
        return {}
    log.info("TFLitePusher: report.html built in %.1fs (%d bytes)", time.time() - started, len(data))
    return {REPORT_FILE: data}
