"""TFLitePusher: the TFX component that ships a blessed model to the bucket.

This module only validates arguments and builds the spec; the work happens
in :mod:`components.tflite_pusher.executor`. Bad combinations (unknown
variant, a default variant that is not built, budgets <= 0) fail here, at
pipeline construction, not hours later in the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from bucket import signing
from components.tflite_pusher import executor
from components.tflite_pusher.live_gate import LiveGateConfig
from shelf_tflite import variants as push_defaults
from shelf_tflite.variants import DEFAULT_PARITY_TOLERANCES, VARIANTS

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TFLitePusherSpec(ComponentSpec):
    """Inputs, outputs and parameters of :class:`TFLitePusher`."""

    PARAMETERS = {
        executor.BUCKET_KEY: ExecutionParameter(type=str),
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        # Lists and maps travel as JSON strings: they survive every
        # orchestrator (local, Kubeflow V2) unchanged.
        executor.VARIANTS_KEY: ExecutionParameter(type=str),
        executor.DEFAULT_VARIANT_KEY: ExecutionParameter(type=str),
        executor.SIZE_BUDGET_KEY: ExecutionParameter(type=int),
        executor.LATENCY_BUDGET_KEY: ExecutionParameter(type=float),
        executor.DAMAGED_TOLERANCE_KEY: ExecutionParameter(type=float),
        executor.PARITY_TOLERANCES_KEY: ExecutionParameter(type=str),
        executor.GOLDEN_COUNT_KEY: ExecutionParameter(type=int),
        executor.REPRESENTATIVE_COUNT_KEY: ExecutionParameter(type=int),
        executor.SOURCE_REVISION_KEY: ExecutionParameter(type=str, optional=True),
        executor.INPUTS_DIGEST_KEY: ExecutionParameter(type=str, optional=True),
        executor.SPLIT_SETTINGS_KEY: ExecutionParameter(type=str, optional=True),
        # The signing key's *source* (file:/env:/gcpkms://), never the key; resolved by the executor.
        executor.SIGNING_KEY_KEY: ExecutionParameter(type=str, optional=True),
        executor.LIVE_GATE_KEY: ExecutionParameter(type=str, optional=True),
        executor.CAMERA_PER_CLASS_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.TRANSFORMED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        # ExampleGen's Examples, for the lineage only (spans, artifact ids, input fingerprints).
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        # SpanDrift's report (components/drift.py), copied into the manifest's "drift" block.
        executor.DRIFT_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
        # StatisticsGen's output: photos per split and class for the manifest's "splits" block.
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        # ExampleValidator's anomalies, for the published report's data section.
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
    }
    OUTPUTS = {
        executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }


class TFLitePusher(base_component.BaseComponent):
    """Convert a blessed model to TFLite variants, verify them, publish to the bucket.

    Example::

        pusher = TFLitePusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            transformed_examples=transform.outputs["transformed_examples"],
            model_evaluation=evaluator.outputs["evaluation"],
            examples=example_gen.outputs["examples"],
            bucket="gs://my-bucket/models",
        )
    """

    SPEC_CLASS = TFLitePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        transformed_examples: types.BaseChannel,
        bucket: str | data_types.RuntimeParameter,
        model_name: str = push_defaults.MODEL_NAME,
        variants: Sequence[str] = push_defaults.DEFAULT_VARIANTS,
        default_variant: str = push_defaults.DEFAULT_VARIANT,
        size_budget_bytes: int = push_defaults.SIZE_BUDGET_BYTES,
        latency_budget_ms: float = push_defaults.LATENCY_BUDGET_MS,
        damaged_recall_tolerance: float = push_defaults.DAMAGED_RECALL_TOLERANCE,
        parity_tolerances: Mapping[str, float] | None = None,
        golden_count: int = push_defaults.GOLDEN_COUNT,
        representative_count: int = push_defaults.REPRESENTATIVE_COUNT,
        model_evaluation: types.BaseChannel | None = None,
        source_revision: str = "",
        examples: types.BaseChannel | None = None,
        inputs_digest: str = "",
        drift: types.BaseChannel | None = None,
        statistics: types.BaseChannel | None = None,
        anomalies: types.BaseChannel | None = None,
        split_settings: Mapping[str, Any] | None = None,
        signing_key: str = "",
        live_gate: Mapping[str, Any] | None = None,
        camera_goldens_per_class: int = push_defaults.CAMERA_GOLDENS_PER_CLASS,
    ):
        """Construct the component.

        Args:
            model: the Trainer's ``Model`` (SavedModel with a ``serving_image`` signature).
            model_blessing: the Evaluator's ``ModelBlessing``.
            transformed_examples: Transform's output ``Examples`` (train: int8
                calibration; eval: verification).
            bucket: local folder, ``gs://...`` or ``ram://...`` (or a runtime parameter).
            model_name: folder under the bucket.
            variants: variants to build, among ``fp32``, ``fp16``, ``dynamic``, ``int8`` and ``tasks``
                (RGB input with TFLite metadata, for MediaPipe Tasks).
            default_variant: the one copied to ``model.tflite``; must be in ``variants``.
            size_budget_bytes: largest accepted ``.tflite``.
            latency_budget_ms: slowest accepted median batch-1 latency (1 thread, host).
            damaged_recall_tolerance: how far ``damaged`` recall may fall below the SavedModel's.
            parity_tolerances: max abs probability difference on golden samples,
                per variant (default fp32 1e-5, fp16 and tasks 1e-2).
            golden_count: eval samples written to ``golden/``.
            representative_count: train images used for int8 calibration.
            model_evaluation: optional Evaluator ``ModelEvaluation``: gate
                metrics for the manifest and the reason when not blessed.
            source_revision: code revision for the manifest's lineage.
            examples: optional ExampleGen ``Examples`` the model was trained and
                evaluated on: their spans, ML Metadata ids and input
                fingerprints go into the manifest's lineage.
            inputs_digest: the run's inputs digest (:mod:`pipeline.inputs_digest`),
                recorded in the lineage so that a re-run with nothing new can be skipped.
            drift: optional SpanDrift ``drift`` output: its report becomes the manifest's ``drift`` block.
            statistics: optional StatisticsGen output: photos per split and class for the manifest.
            anomalies: optional ExampleValidator output, listed in the published ``report.html``.
            split_settings: ``{"buckets": {split: n}, "partition_feature": str, "seed": int}`` for the
                manifest's ``splits`` block (with ``statistics``).
            signing_key: where the manifest signing key comes from (``file:/path``, ``env:VAR`` or
                ``gcpkms://...``; :mod:`bucket.signing`); empty: unsigned unless
                ``SHELF_AUDIT_SIGNING_KEY`` is set where the executor runs.
            live_gate: thresholds of the comparison with the model live at ``LATEST``
                (``enabled``, ``max_recall_drop``, ``max_regressions``; :class:`live_gate.LiveGateConfig`);
                None: the defaults.
            camera_goldens_per_class: original eval photos per class kept in ``golden/camera/`` (0: none).

        Raises:
            ValueError: an argument or a combination of them is invalid.
        """
        variants = list(variants)
        if not variants:
            raise ValueError("variants is empty: build at least the default variant, e.g. variants=['fp16']")
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"variants must be among {list(VARIANTS)}. Received variants={variants}")
        if len(set(variants)) != len(variants):
            raise ValueError(f"variants has duplicates. Received variants={variants}")
        if default_variant not in variants:
            raise ValueError(
                f"default_variant must be one of the variants built ({variants}). "
                f"Received default_variant={default_variant!r}; add it to variants or pick another."
            )
        if isinstance(bucket, data_types.RuntimeParameter):
            pass  # filled in per run (Kubeflow); checked by the executor
        elif not isinstance(bucket, str) or not bucket:
            raise ValueError(f"bucket must be a non-empty path or URI. Received bucket={bucket!r}")
        if not _MODEL_NAME.match(model_name):
            raise ValueError(f"model_name must be a plain folder name. Received model_name={model_name!r}")
        if size_budget_bytes <= 0:
            raise ValueError(f"size_budget_bytes must be > 0. Received size_budget_bytes={size_budget_bytes}")
        if latency_budget_ms <= 0:
            raise ValueError(f"latency_budget_ms must be > 0. Received latency_budget_ms={latency_budget_ms}")
        if not 0 <= damaged_recall_tolerance <= 1:
            raise ValueError(
                "damaged_recall_tolerance must be in [0, 1]. "
                f"Received damaged_recall_tolerance={damaged_recall_tolerance}"
            )
        tolerances = dict(DEFAULT_PARITY_TOLERANCES if parity_tolerances is None else parity_tolerances)
        bad = {k: v for k, v in tolerances.items() if k not in VARIANTS or not v >= 0}
        if bad:
            raise ValueError(f"parity_tolerances must map variants to values >= 0. Received {bad}")
        if golden_count < 1:
            raise ValueError(f"golden_count must be >= 1. Received golden_count={golden_count}")
        if signing_key:
            signing.check_source(signing_key)
        if "int8" in variants and representative_count < 1:
            raise ValueError(
                f"int8 needs representative_count >= 1. Received representative_count={representative_count}"
            )
        live = LiveGateConfig(**dict(live_gate or {}))  # raises ValueError naming a bad threshold
        if camera_goldens_per_class < 0:
            raise ValueError(f"camera_goldens_per_class must be >= 0. Received {camera_goldens_per_class}")
        spec = TFLitePusherSpec(
            model=model,
            model_blessing=model_blessing,
            transformed_examples=transformed_examples,
            model_evaluation=model_evaluation,
            bucket=bucket,
            model_name=model_name,
            variants=json.dumps(variants),
            default_variant=default_variant,
            size_budget_bytes=int(size_budget_bytes),
            latency_budget_ms=float(latency_budget_ms),
            damaged_recall_tolerance=float(damaged_recall_tolerance),
            parity_tolerances=json.dumps(tolerances, sort_keys=True),
            golden_count=int(golden_count),
            representative_count=int(representative_count),
            source_revision=source_revision or None,
            examples=examples,
            inputs_digest=inputs_digest or None,
            drift=drift,
            statistics=statistics,
            anomalies=anomalies,
            split_settings=json.dumps(dict(split_settings), sort_keys=True) if split_settings else None,
            signing_key=signing_key or None,
            live_gate=json.dumps(live.to_dict(), sort_keys=True),
            camera_goldens_per_class=int(camera_goldens_per_class),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
