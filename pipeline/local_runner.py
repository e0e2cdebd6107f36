"""Run the DAG on this machine: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

Layout under a home folder: ``pipeline_root/`` (artifacts), ``metadata.sqlite``
(ML Metadata) and ``bucket/`` (published models, unless the config names a
bucket). This module only chooses the orchestrator and those paths; the
``shelf-audit run`` command adds the flags, the logs and the summary.
"""

from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline, run_inputs


@dataclasses.dataclass(frozen=True)
class LocalPaths:
    """Where a local run under ``home`` keeps its artifacts, metadata and (default) bucket."""

    home: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.home, "pipeline_root")

    @property
    def metadata(self) -> str:
        return os.path.join(self.home, "metadata.sqlite")

    @property
    def bucket(self) -> str:
        return os.path.join(self.home, "bucket")


def run(config: config_lib.PipelineConfig, home: str, source_revision: str = "") -> tfx.proto.ConnectionConfig:
    """Run the pipeline under ``home``; return the ML Metadata connection it wrote to.

    Raises:
        Exception: whatever a failing stage raised.
    """
    paths = LocalPaths(os.path.abspath(home))
    os.makedirs(paths.home, exist_ok=True)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(paths.metadata)
    inputs = run_inputs(config, os.path.abspath(config.data.input_base), config.push.bucket or paths.bucket)
    dag = create_pipeline(
        config,
        pipeline_root=paths.pipeline_root,
        inputs=inputs,
        metadata_connection_config=connection,
        source_revision=source_revision,
    )
    tfx.orchestration.LocalDagRunner().run(dag)
    return connection
