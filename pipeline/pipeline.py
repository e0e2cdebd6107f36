"""The one DAG factory. Runners choose only the orchestrator and the paths."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2, range_config_pb2

from components.tflite_pusher import TFLitePusher
from pipeline.config import GateConfig, PipelineConfig
from pipeline.data_gate import DataGate
from pipeline.eval_config import build_eval_config

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO_ROOT / "schemas" / "schema.pbtxt"
PREPROCESSING_FN = "pipeline.model.preprocessing.preprocessing_fn"
RUN_FN = "pipeline.model.trainer.run_fn"


def code_fingerprint() -> str:
    """Hash of the model code; part of Transform's and Trainer's inputs so that editing it invalidates the cache.

    (Module paths, unlike ``module_file``, are not hashed by TFX.)
    """
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "pipeline").rglob("*.py")) + [SCHEMA_FILE]:
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
    data_root: str,
    metadata_connection_config: tfx.proto.ConnectionConfig | None = None,
    bucket: str | None = None,
    schema_file: str = str(SCHEMA_FILE),
    source_revision: str = "",
) -> tfx.dsl.Pipeline:
    """Build the Shelf Audit DAG.

    Args:
      config: validated pipeline configuration.
      pipeline_root: where TFX writes artifacts.
      data_root: input base holding ``span-{N}/*.tfrecord.gz``.
      metadata_connection_config: ML Metadata store (None on Kubeflow).
      bucket: model bucket the pusher publishes to (default ``config.push.bucket``).
      schema_file: the curated schema.
      source_revision: code revision recorded in the bucket manifest's lineage.

    Raises:
      ValueError: no bucket given here or in ``config.push.bucket``.
    """
    d, t, g, p = config.data, config.training, config.gate, config.push
    bucket = bucket or p.bucket
    if not bucket:
        raise ValueError("no model bucket: set push.bucket in the config or pass bucket=")
    fingerprint = code_fingerprint()

    # Photos of the latest span (or a span range), hash-split into train/eval.
    range_config = None
    if d.span_from is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=d.span_from, end_span_number=d.span_to)
        )
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-{SPAN}/*.tfrecord*")]
        ),
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=d.train_buckets),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=d.eval_buckets),
                ]
            )
        ),
        range_config=range_config,
    )
    # Statistics, the curated schema, and the anomalies between them.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Stop the run on anomalies: ExampleValidator alone records them and goes on.
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"], examples=example_gen.outputs["examples"])
    # Decode, grayscale, resize; labels and slice features pass through.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"image_size": t.image_size, "code_fingerprint": fingerprint},
    )
    transform.add_upstream_node(data_gate)
    # MobileNetV3Small on the transformed pixels.
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config={"training": dataclasses.asdict(t), "code_fingerprint": fingerprint},
    )
    # Baseline: the latest blessed model, if any.
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # The gate: class-weighted recall, per-class floors, no drop against the baseline.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
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
        bucket=bucket,
        model_name=p.model_name,
        variants=list(p.variants),
        default_variant=p.default_variant,
        size_budget_bytes=int(p.size_budget_mb * 1_000_000),
        latency_budget_ms=p.latency_budget_ms,
        damaged_recall_tolerance=p.damaged_recall_tolerance,
        golden_count=p.golden_samples,
        source_revision=source_revision or f"code:{fingerprint}",
    )
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        data_gate,
        transform,
        trainer,
        baseline_resolver,
        evaluator,
        pusher,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )


def default_bucket(home: str) -> str:
    """The model bucket of a local run: ``<home>/bucket``."""
    return os.path.join(home, "bucket")
