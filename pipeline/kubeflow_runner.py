"""Compile the same DAG for Kubeflow Pipelines (V2 pipeline spec).

The container image must have this package installed: Transform and Trainer
load ``pipeline.model.*`` by module path. Beam args in the config switch the
data components to Dataflow, Flink or Spark.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfx import v1 as tfx

from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"


def compile_pipeline(
    config: config_lib.PipelineConfig, pipeline_root: str, data_root: str, output_file: str, image: str = DEFAULT_IMAGE
) -> dict:
    """Write the KFP V2 job envelope to ``output_file``; return the inner ``pipelineSpec``."""
    dag = create_pipeline(config, pipeline_root=pipeline_root, data_root=data_root, metadata_connection_config=None)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_filename=output_file,
    )
    runner.run(dag, write_out=True)
    with open(output_file) as f:
        return json.load(f)["pipelineSpec"]


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.kubeflow_runner --config F --pipeline-root gs://... --data gs://... --out spec.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/production.toml")
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="shelf_audit_pipeline.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args(argv)
    spec = compile_pipeline(config_lib.load(args.config), args.pipeline_root, args.data, args.out, args.image)
    print(f"wrote {args.out} ({len(spec['root']['dag']['tasks'])} tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
