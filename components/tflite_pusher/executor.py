"""Executor of the TFLite pusher: blessed? -> convert and verify -> compare with live -> release.

Subclasses TFX's Pusher executor (``CheckBlessing``, ``GetModelPath``, ``_MarkPushed``, ``_MarkNotPushed``).
``Do`` reads as the steps, each a tested module of its own:
:mod:`components.tflite_pusher.verification`, :mod:`components.tflite_pusher.live_gate` and
:mod:`components.tflite_pusher.release`, published by :mod:`bucket.publish`; the gate's metrics come from
:mod:`report.tfma_reader`. The outcome goes on the ``pushed_model`` artifact (``pushed``,
``pushed_version``, ``pushed_reason``, ...); a model that is not blessed or whose default variant fails
writes nothing to the bucket.

See docs/bucket-contract.md#the-pusher-step-by-step for the steps and every artifact property.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils, standard_component_specs

from bucket import layout, publish, signing, versions
from bucket.live import find_live_model
from components import ArtifactDict, ExecProperties
from components.tflite_pusher import live_gate, release, verification
from components.tflite_pusher.settings import PushSettings
from report import pusher as run_report
from report.tfma_reader import EvaluationView, load_evaluation
from shelf_data.contract import LABELS
from shelf_tflite import convert, runtime
from shelf_tflite.verify import VerifyConfig

# Input/output keys: the stock ones where the meaning is the same.
MODEL_KEY = standard_component_specs.MODEL_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
TRANSFORMED_EXAMPLES_KEY = "transformed_examples"
MODEL_EVALUATION_KEY = "model_evaluation"
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY  # ExampleGen's output, for the lineage
DRIFT_KEY = "drift"  # SpanDrift's report, for the manifest's "drift" block

# Execution parameters that record the run rather than configure the push (the settings' own:
# components.tflite_pusher.settings).
SOURCE_REVISION_KEY = "source_revision"
INPUTS_DIGEST_KEY = "inputs_digest"
SPLIT_SETTINGS_KEY = "split_settings"  # JSON: hash buckets per split, partition feature, training seed
ANOMALIES_KEY = standard_component_specs.ANOMALIES_KEY  # ExampleValidator's output, for the report
STATISTICS_KEY = standard_component_specs.STATISTICS_KEY  # StatisticsGen's output: counts per split and class


def verify_config(settings: PushSettings) -> VerifyConfig:
    """The budgets and tolerances verification checks each variant against."""
    return VerifyConfig(
        size_budget_bytes=settings.size_budget_bytes,
        latency_budget_ms=settings.latency_budget_ms,
        damaged_recall_tolerance=settings.damaged_recall_tolerance,
        parity_tolerances=dict(settings.parity_tolerances),
    )


class Executor(pusher_executor.Executor):
    """Convert the blessed SavedModel to TFLite variants, verify, compare with the live model, publish."""

    def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict, exec_properties: ExecProperties) -> None:
        """Push the model to the bucket if blessed, verified and not worse than the live model.

        Args:
            input_dict: ``model``, ``model_blessing``, ``transformed_examples`` and, optionally,
                ``model_evaluation``, ``examples`` (ExampleGen's), ``statistics``, ``anomalies``, ``drift``.
            output_dict: ``pushed_model``.
            exec_properties: the settings (:class:`PushSettings`) and the run's record (``*_KEY`` here).
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        settings = PushSettings.from_exec_properties(exec_properties)
        evaluation = self._evaluation(input_dict)

        # 1. Not blessed: nothing converted, nothing written.
        if not self.CheckBlessing(input_dict):
            failures = evaluation.failures if evaluation else []
            self._not_pushed(
                model_push, "model not blessed by the Evaluator" + (": " + "; ".join(failures) if failures else "")
            )
            return

        # 2. Same model already in the bucket (a re-run found the previous blessed model): a no-op.
        model_path = self.GetModelPath(input_dict)
        fingerprint = release.saved_model_fingerprint(model_path)
        if self._already_published(model_push, settings, fingerprint):
            return
        # The signing key is loaded before any work, so a bad key fails fast (its source is named, never its value).
        signer = self._signer(settings)

        # 3. Convert and verify every variant on the eval split.
        examples = artifact_utils.get_single_instance(input_dict[TRANSFORMED_EXAMPLES_KEY])
        # Loaded once for the eval reference, the converters, the camera goldens and the report's gallery
        # (~1 s each time).
        saved_model = convert.load_saved_model(model_path)
        data = verification.load_eval_data(
            saved_model, examples, settings.representative_count, settings.golden_samples
        )
        verified = verification.convert_and_verify(
            model_path, settings.variants, data, verify_config(settings), loaded=saved_model
        )
        if not verified.passed(settings.default_variant):
            reasons = verified.reports[settings.default_variant].reasons
            self._not_pushed(
                model_push, f"default variant {settings.default_variant} failed verification: " + "; ".join(reasons)
            )
            return

        # 4. Compare with what is live at LATEST.
        live = self._compare_with_live(settings, verified, data)
        default_live = live.get(settings.default_variant) or {}
        if default_live.get("passed") is False:
            self._not_pushed(
                model_push,
                f"default variant {settings.default_variant} is worse than the live model "
                f"{(default_live.get('live') or {}).get('version')}: " + "; ".join(default_live.get("reasons") or []),
            )
            return

        # 5. Assemble the release in memory, then publish it atomically.
        files, variant_entries = release.model_files(verified, settings.default_variant, live)
        image_shape = runtime.input_image_shape(verified.blobs[settings.default_variant])
        golden = release.golden_files(files, data, settings.default_variant)
        # Camera goldens help the app test its preprocessing; a failure to make them never blocks a release (logged).
        camera = release.best_effort(
            release.camera_goldens,
            input_dict.get(EXAMPLES_KEY),
            settings.camera_goldens_per_class,
            saved_model,
            files,
            settings.default_variant,
        )
        golden.update(camera or {})
        manifest = release.manifest(
            model_name=settings.model_name,
            default_variant=settings.default_variant,
            variants=variant_entries,
            gate_metrics=evaluation.gate_metrics() if evaluation else self._no_gate_metrics(input_dict),
            lineage=self._lineage(input_dict, exec_properties, fingerprint),
            image_shape=image_shape,
            verification=release.verification_block(verify_config(settings), data),
            live_gate={**settings.live_gate_config().to_dict(), "variants": live},
            drift=release.drift_block(input_dict.get(DRIFT_KEY)),
            splits=release.splits_block(exec_properties.get(SPLIT_SETTINGS_KEY) or "", input_dict.get(STATISTICS_KEY)),
            data_quality=release.data_quality_block(input_dict.get(EXAMPLES_KEY)),
        )
        # The HTML run report goes in the version; built in memory first, {} when it failed (logged loudly).
        extra_files = run_report.report_files(input_dict, manifest, model_dir=model_path, model=saved_model)
        result = publish.publish(
            settings.bucket,
            settings.model_name,
            files,
            manifest,
            golden=golden,
            fingerprint=fingerprint,
            signer=signer,
            extra_files=extra_files,
        )
        published = versions.read_manifest(settings.bucket, settings.model_name, result.version)
        self._pushed(model_push, settings, published, result.message, extra_files)

    # -- steps -----------------------------------------------------------

    def _already_published(self, model_push: types.Artifact, settings: PushSettings, fingerprint: str) -> bool:
        """A version of this SavedModel is in the bucket: mark it pushed, write nothing new.

        A publish that was killed after its manifest landed is finished (event recorded,
        LATEST settled from the history), so a deliberate rollback survives re-runs.
        """
        existing = versions.find_version_by_fingerprint(settings.bucket, settings.model_name, fingerprint)
        if existing is None:
            return False
        manifest = versions.read_manifest(settings.bucket, settings.model_name, existing)
        finished = publish.finish_interrupted(settings.bucket, settings.model_name, existing)
        reason = (
            finished
            if finished.startswith("finished")
            else f"model {fingerprint[:12]} already published as {existing}; nothing written"
        )
        self._pushed(model_push, settings, manifest, reason)
        return True

    @staticmethod
    def _compare_with_live(
        settings: PushSettings, verified: verification.Verified, data: verification.EvalData
    ) -> dict[str, dict[str, Any]]:
        """Each verified variant against the live model on the eval split: variant -> the comparison's record."""
        results: dict[str, dict[str, Any]] = {}
        cache: dict[str, Any] = {}
        for variant, report in verified.reports.items():
            if not report.passed:
                continue
            live, why = (
                find_live_model(settings.bucket, settings.model_name, variant) if settings.live_gate else (None, "")
            )
            result = live_gate.gate_variant(
                verified.blobs[variant],
                variant,
                live,
                data.images,
                data.labels,
                settings.live_gate_config(),
                LABELS,
                live_probs_cache=cache,
                live_reason=why,
                candidate_probs=verified.eval_outputs.get(variant),
            )
            line = live_gate.summary(result)
            logging.info("TFLitePusher: %s", line)
            results[variant] = {**result.to_dict(), "summary": line}
        return results

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def _signer(settings: PushSettings) -> signing.Signer | None:
        """The manifest signer from ``$SHELF_AUDIT_SIGNING_KEY`` or the ``signing_key`` property; None: unsigned."""
        source = signing.resolve_source(settings.signing_key)
        if source is None:
            logging.warning("TFLitePusher: no signing key configured: the version will be unsigned")
            return None
        signer = signing.load_signer(source)
        logging.info(
            "TFLitePusher: signing the manifest with the key from %s (%s)",
            source,
            signing.fingerprint(signer.public_key_raw),
        )
        return signer

    @staticmethod
    def _evaluation(input_dict: ArtifactDict) -> EvaluationView | None:
        """The Evaluator's output read once (metrics and validation), or None: its absence never blocks a push."""
        evaluations = input_dict.get(MODEL_EVALUATION_KEY)
        if not evaluations:
            return None
        return release.best_effort(load_evaluation, artifact_utils.get_single_uri(evaluations), LABELS, False)

    @staticmethod
    def _no_gate_metrics(input_dict: ArtifactDict) -> dict[str, Any]:
        evaluations = input_dict.get(MODEL_EVALUATION_KEY)
        if not evaluations:
            return {"source": None, "note": "no model_evaluation input"}
        return {"source": artifact_utils.get_single_uri(evaluations), "note": "could not read the evaluation metrics"}

    def _lineage(self, input_dict: ArtifactDict, exec_properties: dict[str, Any], fingerprint: str) -> dict:
        context = getattr(self, "_context", None)
        return release.build_lineage(
            input_dict,
            id_keys=(MODEL_KEY, MODEL_BLESSING_KEY, TRANSFORMED_EXAMPLES_KEY, MODEL_EVALUATION_KEY),
            examples_key=EXAMPLES_KEY,
            pipeline_name=context.pipeline_info.id if context and context.pipeline_info else None,
            pipeline_run_id=context.pipeline_run_id if context else None,
            pipeline_node=context.pipeline_node.node_info.id if context and context.pipeline_node else None,
            source_revision=exec_properties.get(SOURCE_REVISION_KEY) or "",
            inputs_digest=exec_properties.get(INPUTS_DIGEST_KEY) or "",
            savedmodel_fingerprint=fingerprint,
        )

    def _pushed(
        self,
        model_push: types.Artifact,
        settings: PushSettings,
        manifest: dict,
        reason: str,
        extra_files: dict[str, bytes] | None = None,
    ) -> None:
        version = manifest["version"]
        destination = layout.version_dir(settings.bucket, settings.model_name, version)
        default = manifest["variants"][manifest["default_variant"]]
        self._MarkPushed(model_push, pushed_destination=destination, pushed_version=version)
        model_push.set_string_custom_property("pushed_reason", reason)
        model_push.set_string_custom_property("pushed_variant", manifest["default_variant"])
        model_push.set_string_custom_property("pushed_model_file", f"{destination}/{layout.MODEL_FILE}")
        model_push.set_int_custom_property("pushed_bytes", int(default["bytes"]))
        model_push.set_float_custom_property("pushed_latency_ms", float(default["latency_ms"]))
        live = ((manifest.get("live_gate") or {}).get("variants") or {}).get(manifest["default_variant"]) or {}
        if live.get("summary"):
            model_push.set_string_custom_property("pushed_live_gate", live["summary"])
        # A copy of the manifest with the artifact, for the run summary and lineage.
        tf.io.gfile.makedirs(model_push.uri)
        with tf.io.gfile.GFile(os.path.join(model_push.uri, layout.MANIFEST_FILE), "w") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True))
        # And of the published report, so that the end of the run need not build it a second time.
        for name, data in (extra_files or {}).items():
            with tf.io.gfile.GFile(os.path.join(model_push.uri, name), "wb") as f:
                f.write(data)
        logging.info("TFLitePusher: %s", reason)

    def _not_pushed(self, model_push: types.Artifact, reason: str) -> None:
        self._MarkNotPushed(model_push)
        model_push.set_string_custom_property("pushed_reason", reason)
        logging.warning("TFLitePusher: not pushed: %s", reason)
