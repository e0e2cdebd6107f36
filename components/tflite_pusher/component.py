"""TFLitePusher: the TFX component that ships a blessed model to the bucket.

This module builds the spec from the push settings
(:class:`components.tflite_pusher.settings.PushSettings`, checked when they
are made, so a bad combination fails at pipeline construction, not hours
later in the run); the work happens in :mod:`components.tflite_pusher.executor`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.tflite_pusher import executor
from components.tflite_pusher import settings as keys
from components.tflite_pusher.settings import PushSettings


class TFLitePusherSpec(ComponentSpec):
    """Inputs, outputs and parameters of :class:`TFLitePusher`."""

    PARAMETERS = {
        keys.BUCKET_KEY: ExecutionParameter(type=str),
        keys.MODEL_NAME_KEY: ExecutionParameter(type=str),
        # Lists and maps travel as JSON strings: they survive every
        # orchestrator (local, Kubeflow V2) unchanged.
        keys.VARIANTS_KEY: ExecutionParameter(type=str),
        keys.DEFAULT_VARIANT_KEY: ExecutionParameter(type=str),
        keys.SIZE_BUDGET_KEY: ExecutionParameter(type=int),
        keys.LATENCY_BUDGET_KEY: ExecutionParameter(type=float),
        keys.DAMAGED_TOLERANCE_KEY: ExecutionParameter(type=float),
        keys.PARITY_TOLERANCES_KEY: ExecutionParameter(type=str),
        keys.GOLDEN_COUNT_KEY: ExecutionParameter(type=int),
        keys.REPRESENTATIVE_COUNT_KEY: ExecutionParameter(type=int),
        executor.SOURCE_REVISION_KEY: ExecutionParameter(type=str, optional=True),
        executor.INPUTS_DIGEST_KEY: ExecutionParameter(type=str, optional=True),
        executor.SPLIT_SETTINGS_KEY: ExecutionParameter(type=str, optional=True),
        # The signing key's *source* (file:/env:/gcpkms://), never the key; resolved by the executor.
        keys.SIGNING_KEY_KEY: ExecutionParameter(type=str, optional=True),
        keys.LIVE_GATE_KEY: ExecutionParameter(type=str, optional=True),
        keys.CAMERA_PER_CLASS_KEY: ExecutionParameter(type=int, optional=True),
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
            settings=PushSettings(variants=("fp16", "int8")),
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
        settings: PushSettings | None = None,
        model_evaluation: types.BaseChannel | None = None,
        source_revision: str = "",
        examples: types.BaseChannel | None = None,
        inputs_digest: str = "",
        drift: types.BaseChannel | None = None,
        statistics: types.BaseChannel | None = None,
        anomalies: types.BaseChannel | None = None,
        split_settings: Mapping[str, Any] | None = None,
    ):
        """Construct the component.

        Args:
            model: the Trainer's ``Model`` (SavedModel with a ``serving_image`` signature).
            model_blessing: the Evaluator's ``ModelBlessing``.
            transformed_examples: Transform's output ``Examples`` (train: int8
                calibration; eval: verification).
            bucket: local folder, ``gs://...``, ``s3://...`` or ``memory://...`` (or a runtime parameter); the
                run's bucket, which ``settings.bucket`` does not override.
            settings: variants, budgets, tolerances, golden samples, the live gate and the
                signing key's source (:class:`PushSettings`; None: the defaults).
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

        Raises:
            ValueError: the bucket is empty.
        """
        if isinstance(bucket, data_types.RuntimeParameter):
            pass  # filled in per run (Kubeflow); checked by the executor
        elif not isinstance(bucket, str) or not bucket:
            raise ValueError(f"bucket must be a non-empty path or URI. Received bucket={bucket!r}")
        spec = TFLitePusherSpec(
            model=model,
            model_blessing=model_blessing,
            transformed_examples=transformed_examples,
            model_evaluation=model_evaluation,
            bucket=bucket,
            **(settings or PushSettings()).exec_properties(),
            source_revision=source_revision or None,
            examples=examples,
            inputs_digest=inputs_digest or None,
            drift=drift,
            statistics=statistics,
            anomalies=anomalies,
            split_settings=json.dumps(dict(split_settings), sort_keys=True) if split_settings else None,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
