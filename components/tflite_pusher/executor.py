"""Executor of the TFLite pusher: blessed? -> convert and verify -> compare with live -> release.

Subclasses TFX's Pusher executor and reuses its ``CheckBlessing``,
``GetModelPath``, ``_MarkPushed`` and ``_MarkNotPushed``. ``Do`` reads as
the steps; each lives in a tested module of its own:

1. :mod:`components.tflite_pusher.verification`: calibration and eval data,
   every variant converted and checked against the SavedModel and the budgets;
2. :mod:`components.tflite_pusher.live_gate`: each variant against the model
   live at ``LATEST`` (per-class recall, photos the live model gets right and
   the candidate wrong), with the config's thresholds;
3. :mod:`components.tflite_pusher.release`: files, golden samples, camera
   goldens, manifest, lineage; :mod:`bucket.publish` publishes them
   atomically. The gate's metrics come from the one TFMA reader
   (:mod:`report.tfma_reader`), which the run summary also uses.

Results on the ``pushed_model`` artifact: ``pushed`` (1/0),
``pushed_destination`` (the version folder), ``pushed_version``, and for the
run summary ``pushed_reason``, ``pushed_variant``, ``pushed_bytes``,
``pushed_latency_ms`` and ``pushed_model_file``. A model that is not blessed,
whose default variant fails verification, or whose default variant is worse
than the live one, is marked ``pushed=0`` with the reason and nothing is
written to the bucket.
"""

from __future__ import annotations

import dataclasses
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
from components.tflite_pusher import live_gate, release, verification
from report import pusher as run_report
from report.tfma_reader import EvaluationView, load_evaluation
from shelf_data.contract import LABELS
from shelf_tflite import convert, runtime
from shelf_tflite import variants as push_defaults
from shelf_tflite.verify import VerifyConfig

# Input/output keys: the stock ones where the meaning is the same.
MODEL_KEY = standard_component_specs.MODEL_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
TRANSFORMED_EXAMPLES_KEY = "transformed_examples"
MODEL_EVALUATION_KEY = "model_evaluation"
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY  # ExampleGen's output, for the lineage
DRIFT_KEY = "drift"  # SpanDrift's report, for the manifest's "drift" block

# Execution parameters.
BUCKET_KEY = "bucket"
MODEL_NAME_KEY = "model_name"
VARIANTS_KEY = "variants"  # JSON list
DEFAULT_VARIANT_KEY = "default_variant"
SIZE_BUDGET_KEY = "size_budget_bytes"
LATENCY_BUDGET_KEY = "latency_budget_ms"
DAMAGED_TOLERANCE_KEY = "damaged_recall_tolerance"
PARITY_TOLERANCES_KEY = "parity_tolerances"  # JSON object
GOLDEN_COUNT_KEY = "golden_count"
REPRESENTATIVE_COUNT_KEY = "representative_count"
SOURCE_REVISION_KEY = "source_revision"
INPUTS_DIGEST_KEY = "inputs_digest"
SPLIT_SETTINGS_KEY = "split_settings"  # JSON: hash buckets per split, partition feature, training seed
SIGNING_KEY_KEY = "signing_key"  # the key's source (file:/env:/gcpkms://), never the key itself
ANOMALIES_KEY = standard_component_specs.ANOMALIES_KEY  # ExampleValidator's output, for the report
STATISTICS_KEY = standard_component_specs.STATISTICS_KEY  # StatisticsGen's output: counts per split and class
LIVE_GATE_KEY = "live_gate"  # JSON: enabled, max_recall_drop, max_regressions (live_gate.LiveGateConfig)
CAMERA_PER_CLASS_KEY = "camera_goldens_per_class"  # original eval photos per class kept as camera goldens


@dataclasses.dataclass(frozen=True)
class PushConfig:
    """Plain values the executor works from (parsed once from exec properties)."""

    bucket: str
    model_name: str = push_defaults.MODEL_NAME
    variants: tuple[str, ...] = push_defaults.DEFAULT_VARIANTS
    default_variant: str = push_defaults.DEFAULT_VARIANT
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)
    golden_count: int = push_defaults.GOLDEN_COUNT
    representative_count: int = push_defaults.REPRESENTATIVE_COUNT
    source_revision: str = ""
    inputs_digest: str = ""
    split_settings: str = ""
    signing_key: str = ""
    live_gate: live_gate.LiveGateConfig = dataclasses.field(default_factory=live_gate.LiveGateConfig)
    camera_per_class: int = push_defaults.CAMERA_GOLDENS_PER_CLASS

    @classmethod
    def from_exec_properties(cls, props: dict[str, Any]) -> PushConfig:
        if not props.get(BUCKET_KEY):
            raise ValueError(
                f"the model bucket is empty: set the pipeline's bucket. Received bucket={props.get(BUCKET_KEY)!r}"
            )
        defaults = cls(bucket=props[BUCKET_KEY])
        tolerances = props.get(PARITY_TOLERANCES_KEY)
        return cls(
            bucket=props[BUCKET_KEY],
            model_name=props.get(MODEL_NAME_KEY) or defaults.model_name,
            variants=tuple(json.loads(props[VARIANTS_KEY])) if props.get(VARIANTS_KEY) else defaults.variants,
            default_variant=props.get(DEFAULT_VARIANT_KEY) or defaults.default_variant,
            verify=VerifyConfig(
                size_budget_bytes=int(props.get(SIZE_BUDGET_KEY) or defaults.verify.size_budget_bytes),
                latency_budget_ms=float(props.get(LATENCY_BUDGET_KEY) or defaults.verify.latency_budget_ms),
                damaged_recall_tolerance=float(
                    props[DAMAGED_TOLERANCE_KEY]
                    if props.get(DAMAGED_TOLERANCE_KEY) is not None
                    else defaults.verify.damaged_recall_tolerance
                ),
                parity_tolerances=json.loads(tolerances) if tolerances else dict(defaults.verify.parity_tolerances),
            ),
            golden_count=int(props.get(GOLDEN_COUNT_KEY) or defaults.golden_count),
            representative_count=int(props.get(REPRESENTATIVE_COUNT_KEY) or defaults.representative_count),
            source_revision=props.get(SOURCE_REVISION_KEY) or "",
            inputs_digest=props.get(INPUTS_DIGEST_KEY) or "",
            split_settings=props.get(SPLIT_SETTINGS_KEY) or "",
            signing_key=props.get(SIGNING_KEY_KEY) or "",
            live_gate=live_gate.LiveGateConfig(**json.loads(props[LIVE_GATE_KEY]))
            if props.get(LIVE_GATE_KEY)
            else defaults.live_gate,
            camera_per_class=int(
                defaults.camera_per_class if props.get(CAMERA_PER_CLASS_KEY) is None else props[CAMERA_PER_CLASS_KEY]
            ),
        )


class Executor(pusher_executor.Executor):
    """Convert the blessed SavedModel to TFLite variants, verify, compare with the live model, publish."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Push the model to the bucket if blessed, verified and not worse than the live model.

        Args:
            input_dict: ``model``, ``model_blessing``, ``transformed_examples`` and, optionally,
                ``model_evaluation``, ``examples`` (ExampleGen's), ``statistics``, ``anomalies``, ``drift``.
            output_dict: ``pushed_model``.
            exec_properties: see the ``*_KEY`` constants of this module.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        config = PushConfig.from_exec_properties(exec_properties)
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
        if self._already_published(model_push, config, fingerprint):
            return
        # The signing key is loaded before any work, so a bad key fails fast (its source is named, never its value).
        signer = self._signer(config)

        # 3. Convert and verify every variant on the eval split.
        examples = artifact_utils.get_single_instance(input_dict[TRANSFORMED_EXAMPLES_KEY])
        # Loaded once for the eval reference, the converters, the camera goldens and the report's gallery
        # (~1 s each time).
        saved_model = convert.load_saved_model(model_path)
        data = verification.load_eval_data(saved_model, examples, config.representative_count, config.golden_count)
        verified = verification.convert_and_verify(model_path, config.variants, data, config.verify, loaded=saved_model)
        if not verified.passed(config.default_variant):
            reasons = verified.reports[config.default_variant].reasons
            self._not_pushed(
                model_push, f"default variant {config.default_variant} failed verification: " + "; ".join(reasons)
            )
            return

        # 4. Compare with what is live at LATEST.
        live = self._compare_with_live(config, verified, data)
        default_live = live.get(config.default_variant) or {}
        if default_live.get("passed") is False:
            self._not_pushed(
                model_push,
                f"default variant {config.default_variant} is worse than the live model "
                f"{(default_live.get('live') or {}).get('version')}: " + "; ".join(default_live.get("reasons") or []),
            )
            return

        # 5. Assemble the release in memory, then publish it atomically.
        files, variant_entries = release.model_files(verified, config.default_variant, live)
        image_shape = runtime.input_image_shape(verified.blobs[config.default_variant])
        golden = release.golden_files(files, data, config.default_variant)
        # Camera goldens help the app test its preprocessing; a failure to make them never blocks a release (logged).
        camera = release.best_effort(
            release.camera_goldens,
            input_dict.get(EXAMPLES_KEY),
            config.camera_per_class,
            saved_model,
            files,
            config.default_variant,
        )
        golden.update(camera or {})
        manifest = release.manifest(
            model_name=config.model_name,
            default_variant=config.default_variant,
            variants=variant_entries,
            gate_metrics=evaluation.gate_metrics() if evaluation else self._no_gate_metrics(input_dict),
            lineage=self._lineage(input_dict, config, fingerprint),
            image_shape=image_shape,
            verification=release.verification_block(config.verify, data),
            live_gate={**config.live_gate.to_dict(), "variants": live},
            drift=release.drift_block(input_dict.get(DRIFT_KEY)),
            splits=release.splits_block(config.split_settings, input_dict.get(STATISTICS_KEY)),
            data_quality=release.data_quality_block(input_dict.get(EXAMPLES_KEY)),
        )
        # The HTML run report goes in the version; built in memory first, {} when it failed (logged loudly).
        extra_files = run_report.report_files(input_dict, manifest, model_dir=model_path, model=saved_model)
        result = publish.publish(
            config.bucket,
            config.model_name,
            files,
            manifest,
            golden=golden,
            fingerprint=fingerprint,
            signer=signer,
            extra_files=extra_files,
        )
        published = versions.read_manifest(config.bucket, config.model_name, result.version)
        self._pushed(model_push, config, published, result.message, extra_files)

    # -- steps -----------------------------------------------------------

    def _already_published(self, model_push: types.Artifact, config: PushConfig, fingerprint: str) -> bool:
        """A version of this SavedModel is in the bucket: mark it pushed, write nothing new.

        A publish that was killed after its manifest landed is finished (event recorded,
        LATEST settled from the history), so a deliberate rollback survives re-runs.
        """
        existing = versions.find_version_by_fingerprint(config.bucket, config.model_name, fingerprint)
        if existing is None:
            return False
        manifest = versions.read_manifest(config.bucket, config.model_name, existing)
        finished = publish.finish_interrupted(config.bucket, config.model_name, existing)
        reason = (
            finished
            if finished.startswith("finished")
            else f"model {fingerprint[:12]} already published as {existing}; nothing written"
        )
        self._pushed(model_push, config, manifest, reason)
        return True

    @staticmethod
    def _compare_with_live(
        config: PushConfig, verified: verification.Verified, data: verification.EvalData
    ) -> dict[str, dict[str, Any]]:
        """Each verified variant against the live model on the eval split: variant -> the comparison's record."""
        results: dict[str, dict[str, Any]] = {}
        cache: dict[str, Any] = {}
        for variant, report in verified.reports.items():
            if not report.passed:
                continue
            live, why = (
                find_live_model(config.bucket, config.model_name, variant) if config.live_gate.enabled else (None, "")
            )
            result = live_gate.gate_variant(
                verified.blobs[variant],
                variant,
                live,
                data.images,
                data.labels,
                config.live_gate,
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
    def _signer(config: PushConfig) -> signing.Signer | None:
        """The manifest signer from ``$SHELF_AUDIT_SIGNING_KEY`` or the ``signing_key`` property; None: unsigned."""
        source = signing.resolve_source(config.signing_key)
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
    def _evaluation(input_dict: dict[str, list[types.Artifact]]) -> EvaluationView | None:
        """The Evaluator's output read once (metrics and validation), or None: its absence never blocks a push."""
        evaluations = input_dict.get(MODEL_EVALUATION_KEY)
        if not evaluations:
            return None
        return release.best_effort(load_evaluation, artifact_utils.get_single_uri(evaluations), LABELS, False)

    @staticmethod
    def _no_gate_metrics(input_dict: dict[str, list[types.Artifact]]) -> dict[str, Any]:
        evaluations = input_dict.get(MODEL_EVALUATION_KEY)
        if not evaluations:
            return {"source": None, "note": "no model_evaluation input"}
        return {"source": artifact_utils.get_single_uri(evaluations), "note": "could not read the evaluation metrics"}

    def _lineage(self, input_dict: dict[str, list[types.Artifact]], config: PushConfig, fingerprint: str) -> dict:
        context = getattr(self, "_context", None)
        return release.build_lineage(
            input_dict,
            id_keys=(MODEL_KEY, MODEL_BLESSING_KEY, TRANSFORMED_EXAMPLES_KEY, MODEL_EVALUATION_KEY),
            examples_key=EXAMPLES_KEY,
            pipeline_name=context.pipeline_info.id if context and context.pipeline_info else None,
            pipeline_run_id=context.pipeline_run_id if context else None,
            pipeline_node=context.pipeline_node.node_info.id if context and context.pipeline_node else None,
            source_revision=config.source_revision,
            inputs_digest=config.inputs_digest,
            savedmodel_fingerprint=fingerprint,
        )

    def _pushed(
        self,
        model_push: types.Artifact,
        config: PushConfig,
        manifest: dict,
        reason: str,
        extra_files: dict[str, bytes] | None = None,
    ) -> None:
        version = manifest["version"]
        destination = layout.version_dir(config.bucket, config.model_name, version)
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
