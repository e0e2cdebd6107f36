"""The one DAG factory. Runners choose only the orchestrator, the paths and the run inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.utils import proto_utils

import shelf_data
import shelf_model
from components.data_gate import DataGate
from components.schema_importer import CuratedSchemaGen, package_schema_uri
from components.tflite_pusher import TFLitePusher
from components.trainer import Trainer
from pipeline.config import DataConfig, GateConfig, PipelineConfig
from pipeline.eval_config import build_eval_config

PREPROCESSING_FN = "shelf_model.preprocessing.preprocessing_fn"
RUN_FN = "shelf_model.trainer.run_fn"
SCHEMA_PACKAGE, SCHEMA_NAME = "shelf_data", "schema.pbtxt"


def code_fingerprint() -> str:
    """Hash of the model code and the data contract; part of Transform's and Trainer's inputs.

    Module paths, unlike ``module_file``, are not hashed by TFX: without this,
    editing the model code would not invalidate the cache.
    """
    digest = hashlib.sha256()
    model_dir = Path(shelf_model.__file__).parent
    data_dir = Path(shelf_data.__file__).parent
    files = sorted(model_dir.glob("*.py")) + [data_dir / "contract.py", data_dir / SCHEMA_NAME]
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
    range_config: Value  # RangeConfig JSON; "" means the latest span
    bucket: Value  # model bucket
    epochs: Value


def range_config_json(data: DataConfig) -> str:
    """The config's span selection as RangeConfig JSON ("" for the latest span)."""
    if data.span_from is None:
        return ""
    static = {"start_span_number": data.span_from, "end_span_number": data.span_to}
    return json.dumps({"static_range": static}, sort_keys=True)


def run_inputs(config: PipelineConfig, data_root: str | None = None, bucket: str | None = None) -> RunInputs:
    """Concrete run inputs from the config, with the data root and bucket optionally overridden.

    Raises:
        ValueError: no bucket given here or in ``config.push.bucket``.
    """
    bucket = bucket or config.push.bucket
    if not bucket:
        raise ValueError("no model bucket: set push.bucket in the config or pass bucket=")
    return RunInputs(
        input_base=data_root or config.data.input_base,
        range_config=range_config_json(config.data),
        bucket=bucket,
        epochs=config.training.epochs,
    )


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
    metadata_connection_config: tfx.proto.ConnectionConfig | None = None,
    schema_file: str | None = None,
    source_revision: str = "",
) -> tfx.dsl.Pipeline:
    """Build the Shelf Audit DAG.

    Args:
      config: validated pipeline configuration.
      pipeline_root: where TFX writes artifacts.
      inputs: data root, span selection, bucket and epochs (values or runtime parameters).
      metadata_connection_config: ML Metadata store (None on Kubeflow).
      schema_file: the curated schema (default: the one shipped in ``shelf_data``).
      source_revision: code revision recorded in the bucket manifest's lineage.
    """
    d, t, g, p = config.data, config.training, config.gate, config.push
    fingerprint = code_fingerprint()

    # Photos of the latest span (or a span range), hash-split into train/eval.
    example_gen = tfx.components.ImportExampleGen(
        input_base=inputs.input_base,
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
        range_config=_range_config(inputs.range_config),
    )
    # Statistics, the curated schema, and the anomalies between them.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = CuratedSchemaGen(schema_file=schema_file or package_schema_uri(SCHEMA_PACKAGE, SCHEMA_NAME)).with_id(
        "ImportSchemaGen"
    )
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
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        custom_config={"training": dataclasses.asdict(t), "code_fingerprint": fingerprint},
        epochs=inputs.epochs,
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
        bucket=inputs.bucket,
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
