"""The one DAG factory. Runners choose only the orchestrator, the paths and the run inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma

# Not `from tfx import v1`: it also loads the Google Cloud AI Platform extensions (2.8 s per process), unused here.
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator.component import Evaluator
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration import data_types
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import channel, standard_artifacts
from tfx.utils import proto_utils

import schemas
import shelf_data
import shelf_model
from components.data_gate import DataGate
from components.drift import SpanDrift
from components.example_gen.component import SpanWindowExampleGen
from components.schema_importer import CuratedSchemaGen, package_schema_uri
from components.tflite_pusher import TFLitePusher
from components.trainer import Trainer
from components.transform import Transform
from pipeline import inputs_digest as digest_lib
from pipeline.config import DataConfig, GateConfig, PipelineConfig
from pipeline.eval_config import build_eval_config
from shelf_data import spans as spans_lib
from shelf_data import splits, window
from shelf_data.window import SPLIT_NAME, SPLIT_PATTERN

log = logging.getLogger("shelf_audit.pipeline")

PREPROCESSING_FN = "shelf_model.preprocessing.preprocessing_fn"
RUN_FN = "shelf_model.trainer.run_fn"
SCHEMA_PACKAGE, SCHEMA_NAME = schemas.__name__, schemas.SCHEMA_FILE


def code_fingerprint() -> str:
    """Hash of the model code and the data contract; part of Transform's and Trainer's inputs.

    Module paths, unlike ``module_file``, are not hashed by TFX: without this,
    editing the model code would not invalidate the cache.
    """
    digest = hashlib.sha256()
    model_dir = Path(shelf_model.__file__).parent
    data_dir = Path(shelf_data.__file__).parent
    files = sorted(model_dir.glob("*.py")) + [data_dir / "contract.py", schemas.SCHEMA_PATH]
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


Value = str | int | data_types.RuntimeParameter


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What may change from run to run without recompiling.

    Concrete values on a local run; ``RuntimeParameter``s (with the config's
    values as defaults) in a compiled Kubeflow spec.
    """

    input_base: Value  # folder holding span-N/*.tfrecord.gz
    range_config: Value  # RangeConfig JSON ("" = the latest span); on a local run, the concrete static range
    bucket: Value  # model bucket
    epochs: Value
    # The span window resolved once for a local run (None in a compiled spec, or when nothing matched yet).
    resolution: window.Resolution | None = None

    def values(self) -> tuple[Value, ...]:
        """The inputs a compiled spec takes as runtime parameters, in order."""
        return (self.input_base, self.range_config, self.bucket, self.epochs)


def range_config_json(data: DataConfig) -> str:
    """The config's span selection (``data.spans``) as RangeConfig JSON ("" for the latest span).

    ``last:K`` is a ``rolling_range``: resolved against the spans present when ExampleGen runs.
    """
    return spans_lib.to_json(spans_lib.parse(data.spans))


def run_inputs(
    config: PipelineConfig,
    data_root: str | None = None,
    bucket: str | None = None,
    resolution: window.Resolution | None = None,
) -> RunInputs:
    """Concrete run inputs from the config, with the data root and bucket optionally overridden.

    The span selection (``data.spans``) is resolved against the spans under the data root, unless
    ``resolution`` already holds it: ExampleGen then reads exactly that window, as a static range.
    With no matching span yet the selection stays as configured (logged): ExampleGen resolves it
    when it runs and names the folder and the spans present if there is still nothing to read.

    Raises:
        ValueError: no bucket given here or in ``config.push.bucket``.
    """
    bucket = bucket or config.push.bucket
    if not bucket:
        raise ValueError("no model bucket: set push.bucket in the config or pass bucket=")
    input_base = data_root or config.data.input_base
    if resolution is None:
        try:
            resolution = window.resolve(input_base, window.input_config(), spans_lib.parse(config.data.spans))
        except ValueError as e:
            log.warning("span selection %s not resolved while building the pipeline: %s", config.data.spans, e)
    return RunInputs(
        input_base=input_base,
        range_config=resolution.range_config_json if resolution else range_config_json(config.data),
        bucket=bucket,
        epochs=config.training.epochs,
        resolution=resolution,
    )


def inputs_digest(config: PipelineConfig, inputs: RunInputs) -> digest_lib.InputsDigest:
    """The inputs digest of a run (:mod:`pipeline.inputs_digest`): selected spans, code and config.

    ``inputs`` must hold a resolved span window (a local run), not runtime parameters.

    Raises:
        ValueError: ``inputs`` holds no resolved span window (a compiled spec, or no span matched).
    """
    if inputs.resolution is None:
        raise ValueError("the inputs digest needs the run's resolved span window: no span matched, or a compiled spec")
    return digest_lib.compute(config, inputs.resolution, code_fingerprint())


def _digest_for_manifest(config: PipelineConfig, inputs: RunInputs) -> str:
    """The digest recorded by the pusher; "" when it cannot be known at construction (logged, never silent)."""
    if inputs.resolution is None and (
        isinstance(inputs.input_base, data_types.RuntimeParameter)
        or isinstance(inputs.range_config, data_types.RuntimeParameter)
    ):
        return ""  # a compiled spec: the data is only known on the cluster
    try:
        return inputs_digest(config, inputs).digest
    except Exception as e:  # noqa: BLE001 - the digest is a record: without it the run still runs, and says why
        log.warning("inputs digest not recorded (the manifest's lineage will lack it): %s", e)
        return ""


def split_buckets(data: DataConfig) -> dict[str, int]:
    """Hash buckets per split, in ExampleGen's order."""
    return {
        splits.TRAIN: data.train_buckets,
        splits.VALIDATION: data.validation_buckets,
        splits.EVAL: data.eval_buckets,
    }


def split_settings(config: PipelineConfig) -> dict[str, Any]:
    """How the photos are split, for the manifest and the summary: buckets, grouping feature, training seed."""
    d = config.data
    return {"buckets": split_buckets(d), "partition_feature": d.partition_feature, "seed": config.training.seed}


def _range_config(value: Value) -> range_config_pb2.RangeConfig | data_types.RuntimeParameter | None:
    if isinstance(value, data_types.RuntimeParameter):
        return value
    return proto_utils.json_to_proto(value, range_config_pb2.RangeConfig()) if value else None


def gate_eval_config(gate: GateConfig) -> tfma.EvalConfig:
    """The Evaluator's config for ``gate``."""
    return build_eval_config(
        dict(gate.class_weights),
        gate.weighted_recall_floor,
        dict(gate.class_recall_floors),
        gate.max_drop,
        tuple(gate.slices),
    )


def create_pipeline(
    config: PipelineConfig,
    pipeline_root: str,
    inputs: RunInputs,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    schema_file: str | None = None,
    source_revision: str = "",
) -> Pipeline:
    """Build the Shelf Audit DAG.

    Args:
      config: validated pipeline configuration.
      pipeline_root: where TFX writes artifacts.
      inputs: data root, span selection, bucket and epochs (values or runtime parameters).
      metadata_connection_config: ML Metadata store (None on Kubeflow).
      schema_file: the curated schema (default: the one shipped in ``schemas``).
      source_revision: code revision recorded in the bucket manifest's lineage.
    """
    d, t, g, p = config.data, config.training, config.gate, config.push
    fingerprint = code_fingerprint()

    # Photos of the selected spans (latest, last K, a range), hash-split into train/validation/eval.
    example_gen = SpanWindowExampleGen(
        input_base=inputs.input_base,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=SPLIT_PATTERN)]
        ),
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                    for name, buckets in split_buckets(d).items()
                ],
                partition_feature_name=d.partition_feature or None,
            )
        ),
        range_config=_range_config(inputs.range_config),
        max_bad_fraction=d.max_bad_fraction,  # unusable photos are dropped and listed in bad_records.json
    ).with_id("ImportExampleGen")
    # Statistics, the curated schema, and the anomalies between them.
    schema_gen = CuratedSchemaGen(schema_file=schema_file or package_schema_uri(SCHEMA_PACKAGE, SCHEMA_NAME)).with_id(
        "ImportSchemaGen"
    )
    # With the schema, TFDV counts the categorical label exactly per split (the summary's split table).
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Stop the run on anomalies: ExampleValidator alone records them and goes on.
    # ... and on too many unusable photos (above data.max_bad_fraction) or a class missing from train or eval.
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],
        min_class_count=d.min_class_count,
    )
    # Decode, grayscale, resize; labels and slice features pass through. Plain TFRecords out (components.transform).
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"image_size": t.image_size, "code_fingerprint": fingerprint},
        # StatisticsGen already computes the input's statistics and nothing reads statistics of the
        # pixel blobs: Transform's own pre- and post-transform statistics would repeat that pass twice.
        disable_statistics=True,
    )
    transform.add_upstream_node(data_gate)
    # The newest span against the one before it: reported, and stops the run only with drift.stop_on_drift.
    span_drift = None
    if config.drift.enabled:
        span_drift = SpanDrift(
            examples=example_gen.outputs["examples"],
            schema=schema_gen.outputs["schema"],
            input_base=inputs.input_base,
            split_pattern=SPLIT_PATTERN,
            settings=config.drift.to_json(),
        ).with_id("SpanDrift")
        if config.drift.stop_on_drift:
            transform.add_upstream_node(span_drift)
    # MobileNetV3Small on the transformed pixels.
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        custom_config={"training": dataclasses.asdict(t), "code_fingerprint": fingerprint},
        epochs=inputs.epochs,
    )
    # Baseline: the latest blessed model, if any.
    baseline_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=channel.Channel(type=standard_artifacts.Model),
        model_blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # The gate: class-weighted recall, per-class floors, no drop against the baseline.
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        example_splits=[splits.EVAL],  # photos the Trainer never looked at
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=gate_eval_config(g),
    )
    # Blessed? Convert to TFLite variants, verify them, publish to the bucket.
    pusher = TFLitePusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        transformed_examples=transform.outputs["transformed_examples"],
        model_evaluation=evaluator.outputs["evaluation"],
        examples=example_gen.outputs["examples"],  # lineage: spans and ExampleGen artifact ids
        inputs_digest=_digest_for_manifest(config, inputs),
        drift=span_drift.outputs["drift"] if span_drift is not None else None,
        statistics=statistics_gen.outputs["statistics"],  # photos per split and class
        anomalies=example_validator.outputs["anomalies"],  # listed in the published report
        split_settings=split_settings(config),
        bucket=inputs.bucket,
        settings=p,  # variants, budgets, goldens, the live gate, the signing key's source
        source_revision=source_revision or f"code:{fingerprint}",
    )
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        data_gate,
        *([span_drift] if span_drift is not None else []),
        transform,
        trainer,
        baseline_resolver,
        evaluator,
        pusher,
    ]
    return Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
