"""Executor of the TFLite pusher: blessed? -> convert -> verify -> publish.

Subclasses TFX's Pusher executor and reuses its ``CheckBlessing``,
``GetModelPath``, ``_MarkPushed`` and ``_MarkNotPushed``. The side effects
live in two small tested modules: :mod:`components.tflite_convert`
(conversion, verification) and :mod:`components.model_bucket` (publish).

Results on the ``pushed_model`` artifact: ``pushed`` (1/0),
``pushed_destination`` (the version folder), ``pushed_version``, and for the
run summary ``pushed_reason``, ``pushed_variant``, ``pushed_bytes``,
``pushed_latency_ms`` and ``pushed_model_file``. A model that is not blessed,
or whose default variant fails verification, is marked ``pushed=0`` with the
reason and nothing is written to the bucket.

The manifest's ``lineage`` ties the version to its run: pipeline and run id,
ML Metadata ids of the model, blessing, evaluation and examples, the spans
with each ExampleGen artifact's id, version and input fingerprint (from the
optional ``examples`` input), the source revision and the run's inputs digest
(:mod:`pipeline.inputs_digest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils, standard_component_specs

from components import bad_records, model_bucket, signing, split_stats, splits, tflite_convert
from components import drift as drift_lib
from components import variants as push_defaults
from components.report import pusher as run_report
from shelf_data.contract import LABELS

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

# Calibration from the train split; verification and golden samples on the held-out eval split.
TRAIN_SPLIT, EVAL_SPLIT = splits.TRAIN, splits.EVAL


@dataclasses.dataclass(frozen=True)
class PushConfig:
    """Plain values the executor works from (parsed once from exec properties)."""

    bucket: str
    model_name: str = push_defaults.MODEL_NAME
    variants: tuple[str, ...] = push_defaults.DEFAULT_VARIANTS
    default_variant: str = push_defaults.DEFAULT_VARIANT
    verify: tflite_convert.VerifyConfig = dataclasses.field(default_factory=tflite_convert.VerifyConfig)
    golden_count: int = push_defaults.GOLDEN_COUNT
    representative_count: int = push_defaults.REPRESENTATIVE_COUNT
    source_revision: str = ""
    inputs_digest: str = ""
    split_settings: str = ""
    signing_key: str = ""

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
            verify=tflite_convert.VerifyConfig(
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
        )


def saved_model_fingerprint(model_dir: str) -> str:
    """sha256 over every file of the SavedModel (relative path + content).

    The identity used for deduplication: a re-run that hands the same
    trained model to the Pusher again gets the same fingerprint, whatever
    the converter does.
    """
    digest = hashlib.sha256()
    root = model_dir.rstrip("/")
    paths = []
    for folder, _, names in tf.io.gfile.walk(root):
        paths.extend(os.path.join(folder, name) for name in names)
    for path in sorted(paths):
        digest.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
        with tf.io.gfile.GFile(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def read_gate_metrics(evaluation_uri: str) -> dict[str, Any]:
    """The overall slice's metrics of a TFMA evaluation, split overall / per class.

    Per-class values are the gate's ``recall/<label>`` metrics and any metric
    with a ``class_id`` sub key; diffs against the baseline are kept under
    ``diff``; the baseline model's own values are left out.
    """
    import tensorflow_model_analysis as tfma

    overall: dict[str, float | None] = {}
    per_class: dict[str, dict[str, float | None]] = {}
    diff: dict[str, float | None] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue  # overall slice only; slices live in the TFMA output
        for entry in metrics.metric_keys_and_values:
            if not entry.value.HasField("double_value"):
                continue
            key, value = entry.key, _finite(entry.value.double_value.value)
            if key.model_name == "baseline":
                continue  # the baseline's own values; the candidate's diffs are kept
            metric, _, label = key.name.partition("/")
            if label in LABELS:  # the gate's argmax recall per class, e.g. "recall/damaged"
                per_class.setdefault(label, {})[("diff:" if key.is_diff else "") + metric] = value
            elif key.HasField("sub_key") and key.sub_key.HasField("class_id"):
                class_id = key.sub_key.class_id.value
                name = LABELS[class_id] if class_id < len(LABELS) else str(class_id)
                target = per_class.setdefault(name, {})
                target[("diff:" if key.is_diff else "") + key.name] = value
            elif key.is_diff:
                diff[key.name] = value
            else:
                overall[key.name] = value
    return {"source": evaluation_uri, "overall": overall, "per_class": per_class, "diff": diff}


def read_validation_failures(evaluation_uri: str) -> list[str]:
    """Why TFMA refused to bless: one line per failed threshold (best effort)."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append(f"{failure.metric_key.name}: {failure.message}".strip())
    return failures


def _int_property(artifact: types.Artifact, name: str) -> int | None:
    if artifact.has_property(name):
        return int(getattr(artifact, name))
    if artifact.has_custom_property(name):
        return int(artifact.get_int_custom_property(name))
    return None


def _spans_of(artifact: types.Artifact, span: int | None) -> list[int]:
    # A window of spans records every span read in the "spans" custom property ("3,4"); TFX's "span" is the newest.
    if artifact.has_custom_property("spans"):
        return sorted(int(s) for s in artifact.get_string_custom_property("spans").split(",") if s.strip())
    return [] if span is None else [span]


def examples_lineage(examples: list[types.Artifact]) -> list[dict[str, Any]]:
    """One entry per ExampleGen artifact, by span: ML Metadata id, span(s), version, input fingerprint, uri."""
    entries = []
    for artifact in examples:
        span = _int_property(artifact, "span")
        entries.append(
            {
                "artifact_id": artifact.id or None,
                "span": span,
                "spans": _spans_of(artifact, span),
                "version": _int_property(artifact, "version"),
                "input_fingerprint": artifact.get_string_custom_property("input_fingerprint") or None,
                "uri": artifact.uri,
            }
        )
    return sorted(entries, key=lambda e: (e["span"] is None, e["span"] or 0, e["artifact_id"] or 0))


def build_lineage(
    input_dict: dict[str, list[types.Artifact]],
    *,
    pipeline_name: str | None,
    pipeline_run_id: str | None,
    pipeline_node: str | None,
    source_revision: str,
    inputs_digest: str,
    savedmodel_fingerprint: str,
) -> dict[str, Any]:
    """The manifest's ``lineage`` block for the pusher's inputs.

    ``mlmd`` holds ``<input>_artifact_id`` and ``<input>_uri`` for the model,
    blessing, transformed examples and evaluation, and
    ``examples_artifact_ids``; ``examples`` and ``spans`` come from the
    ExampleGen artifacts (empty without the ``examples`` input).
    """
    ids: dict[str, Any] = {}
    for key in (MODEL_KEY, MODEL_BLESSING_KEY, TRANSFORMED_EXAMPLES_KEY, MODEL_EVALUATION_KEY):
        for artifact in input_dict.get(key) or []:
            ids[f"{key}_artifact_id"] = artifact.id or None
            ids[f"{key}_uri"] = artifact.uri
    examples = examples_lineage(input_dict.get(EXAMPLES_KEY) or [])
    ids["examples_artifact_ids"] = [e["artifact_id"] for e in examples]
    return {
        "pipeline_name": pipeline_name or None,
        "pipeline_run_id": pipeline_run_id or None,
        "pipeline_node": pipeline_node or None,
        "mlmd": ids,
        "spans": sorted({span for e in examples for span in e["spans"]}),
        "examples": examples,
        "source_revision": source_revision or None,
        "inputs_digest": inputs_digest or None,
        "savedmodel_fingerprint": savedmodel_fingerprint,
    }


class Executor(pusher_executor.Executor):
    """Convert the blessed SavedModel to TFLite variants, verify, publish."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Push the model to the bucket if blessed and verified.

        Args:
            input_dict: ``model``, ``model_blessing``, ``transformed_examples``
                and, optionally, ``model_evaluation`` and ``examples`` (ExampleGen's).
            output_dict: ``pushed_model``.
            exec_properties: see the ``*_KEY`` constants of this module.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        config = PushConfig.from_exec_properties(exec_properties)
        evaluation_uri = self._evaluation_uri(input_dict)

        # 1. Not blessed: nothing converted, nothing written.
        if not self.CheckBlessing(input_dict):
            reason = "model not blessed by the Evaluator"
            failures = self._safe(read_validation_failures, evaluation_uri) if evaluation_uri else None
            if failures:
                reason += ": " + "; ".join(failures)
            self._not_pushed(model_push, reason)
            return

        model_path = self.GetModelPath(input_dict)
        fingerprint = saved_model_fingerprint(model_path)

        # 2. Same model already in the bucket (a re-run found the previous
        # blessed model): a no-op, not a duplicate version. A publish that was
        # killed after its manifest landed is finished (event recorded, LATEST
        # settled from the history), so a deliberate rollback survives re-runs.
        existing = model_bucket.find_version_by_fingerprint(config.bucket, config.model_name, fingerprint)
        if existing is not None:
            manifest = model_bucket.read_manifest(config.bucket, config.model_name, existing)
            finished = model_bucket.finish_interrupted(config.bucket, config.model_name, existing)
            self._pushed(
                model_push,
                config,
                manifest,
                finished
                if finished.startswith("finished")
                else f"model {fingerprint[:12]} already published as {existing}; nothing written",
            )
            return

        # The signing key is loaded before any work, so a bad key fails fast (its source is named, never its value).
        signer = self._signer(config)

        # 3. Data: calibration from train, verification on the whole eval split.
        examples = artifact_utils.get_single_instance(input_dict[TRANSFORMED_EXAMPLES_KEY])
        representative = tflite_convert.sample_split(
            artifact_utils.get_split_uri([examples], TRAIN_SPLIT), config.representative_count
        )
        eval_images, eval_labels = tflite_convert.load_images(artifact_utils.get_split_uri([examples], EVAL_SPLIT))
        eval_reference = tflite_convert.saved_model_predict(model_path, eval_images)
        golden_index = tflite_convert.select_golden_indices(eval_labels, config.golden_count)
        logging.info(
            "TFLitePusher: %d calibration images, %d eval images, %d golden samples",
            len(representative),
            len(eval_images),
            len(golden_index),
        )

        # 4. Convert and verify every variant.
        blobs: dict[str, bytes] = {}
        reports: dict[str, tflite_convert.VariantReport] = {}
        for variant in config.variants:
            blobs[variant] = tflite_convert.convert(model_path, variant, representative_images=representative)
            reports[variant] = tflite_convert.verify_variant(
                blobs[variant],
                variant,
                golden_images=eval_images[golden_index],
                golden_reference=eval_reference[golden_index],
                eval_images=eval_images,
                eval_labels=eval_labels,
                eval_reference=eval_reference,
                config=config.verify,
            )
        logging.info("TFLitePusher verification:\n%s", tflite_convert.summarize(list(reports.values())))
        default = reports[config.default_variant]
        if not default.passed:
            self._not_pushed(
                model_push,
                f"default variant {config.default_variant} failed verification: " + "; ".join(default.reasons),
            )
            return

        # 5. Publish (rejected non-default variants are recorded, not shipped).
        files: dict[str, bytes] = {model_bucket.MODEL_FILE: blobs[config.default_variant]}
        variant_entries: dict[str, dict[str, Any]] = {}
        for variant, report in reports.items():
            name = f"model_{variant}.tflite"
            entry = report.to_dict()
            entry["file"] = name if report.passed else None
            entry["published"] = report.passed
            variant_entries[variant] = entry
            if report.passed:
                files[name] = blobs[variant]
            else:
                logging.warning("variant %s not published: %s", variant, "; ".join(report.reasons))
        files[model_bucket.LABELS_FILE] = ("\n".join(LABELS) + "\n").encode("utf-8")

        expected = {
            name: tflite_convert.run_tflite(data, eval_images[golden_index])
            for name, data in files.items()
            if name.endswith(".tflite")
        }
        tolerances = {name: (0.02 if self._variant_of(name, config) == "int8" else 1e-3) for name in expected}
        golden = model_bucket.build_golden(
            eval_images[golden_index],
            eval_labels[golden_index],
            eval_reference[golden_index],
            expected,
            tolerances,
            LABELS,
        )
        gate_metrics: dict[str, Any] = {"source": None, "note": "no model_evaluation input"}
        if evaluation_uri:
            gate_metrics = self._safe(read_gate_metrics, evaluation_uri) or {
                "source": evaluation_uri,
                "note": "could not read the evaluation metrics",
            }
        manifest = model_bucket.build_manifest(
            model_name=config.model_name,
            default_variant=config.default_variant,
            variants=variant_entries,
            labels=LABELS,
            gate_metrics=gate_metrics,
            lineage=self._lineage(input_dict, config, fingerprint),
            image_shape=tflite_convert.input_image_shape(blobs[config.default_variant]),
            extra={
                "verification": {
                    "size_budget_bytes": config.verify.size_budget_bytes,
                    "latency_budget_ms": config.verify.latency_budget_ms,
                    "damaged_recall_tolerance": config.verify.damaged_recall_tolerance,
                    "parity_tolerances": dict(config.verify.parity_tolerances),
                    "latency": "median of batch-1 invocations, 1 thread, host CPU",
                    "eval_examples": int(len(eval_images)),
                    "calibration_examples": int(len(representative)),
                },
                "drift": self._drift(input_dict),
                "splits": self._splits(input_dict, config),
                "data_quality": self._data_quality(input_dict),
            },
        )
        # The HTML run report goes in the version; built in memory first, {} when it failed (logged loudly).
        extra_files = run_report.report_files(input_dict, manifest, model_dir=model_path)
        result = model_bucket.publish(
            config.bucket,
            config.model_name,
            files,
            manifest,
            golden=golden,
            fingerprint=fingerprint,
            signer=signer,
            extra_files=extra_files,
        )
        published = model_bucket.read_manifest(config.bucket, config.model_name, result.version)
        self._pushed(model_push, config, published, result.message, extra_files)

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
    def _variant_of(file_name: str, config: PushConfig) -> str:
        if file_name == model_bucket.MODEL_FILE:
            return config.default_variant
        return file_name[len("model_") : -len(".tflite")]

    @staticmethod
    def _safe(func, *args):
        # Reading TFMA output is best effort: its absence must not block a push.
        try:
            return func(*args)
        except Exception as error:
            logging.warning("TFLitePusher: %s(%s) failed: %s", func.__name__, args, error)
            return None

    @classmethod
    def _drift(cls, input_dict: dict[str, list[types.Artifact]]) -> dict[str, Any] | None:
        """SpanDrift's report (None without the input, or when it cannot be read: logged)."""
        reports = input_dict.get(DRIFT_KEY)
        return cls._safe(drift_lib.read_report, artifact_utils.get_single_uri(reports)) if reports else None

    @classmethod
    def _data_quality(cls, input_dict: dict[str, list[types.Artifact]]) -> dict[str, Any] | None:
        """Photos ExampleGen dropped (components/bad_records.py): counts, reasons, the first 100 (None if unknown)."""
        examples = input_dict.get(EXAMPLES_KEY) or []
        for artifact in examples:
            report = cls._safe(bad_records.read_bad_records, artifact.uri)
            if report is not None:
                return bad_records.manifest_entry(report)
        return None

    @classmethod
    def _splits(cls, input_dict: dict[str, list[types.Artifact]], config: PushConfig) -> dict[str, Any] | None:
        """Split ratios, grouping and seed, with counts per split and class from StatisticsGen (None if unknown)."""
        if not config.split_settings:
            return None
        settings = json.loads(config.split_settings)
        statistics = input_dict.get(STATISTICS_KEY)
        counts = (
            cls._safe(
                split_stats.read_split_counts, artifact_utils.get_single_uri(statistics), list(settings["buckets"])
            )
            if statistics
            else None
        )
        return split_stats.split_record(
            settings["buckets"], settings["partition_feature"], settings["seed"], counts or {}
        )

    @staticmethod
    def _evaluation_uri(input_dict: dict[str, list[types.Artifact]]) -> str | None:
        evaluations = input_dict.get(MODEL_EVALUATION_KEY)
        return artifact_utils.get_single_uri(evaluations) if evaluations else None

    def _lineage(self, input_dict: dict[str, list[types.Artifact]], config: PushConfig, fingerprint: str) -> dict:
        context = getattr(self, "_context", None)
        return build_lineage(
            input_dict,
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
        destination = model_bucket.version_dir(config.bucket, config.model_name, version)
        default = manifest["variants"][manifest["default_variant"]]
        self._MarkPushed(model_push, pushed_destination=destination, pushed_version=version)
        model_push.set_string_custom_property("pushed_reason", reason)
        model_push.set_string_custom_property("pushed_variant", manifest["default_variant"])
        model_push.set_string_custom_property("pushed_model_file", f"{destination}/{model_bucket.MODEL_FILE}")
        model_push.set_int_custom_property("pushed_bytes", int(default["bytes"]))
        model_push.set_float_custom_property("pushed_latency_ms", float(default["latency_ms"]))
        # A copy of the manifest with the artifact, for the run summary and lineage.
        tf.io.gfile.makedirs(model_push.uri)
        with tf.io.gfile.GFile(os.path.join(model_push.uri, model_bucket.MANIFEST_FILE), "w") as f:
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
