"""Run the DAG on this machine: LocalDagRunner, Beam DirectRunner, ML Metadata in SQLite or MySQL.

Layout under a home folder: ``pipeline_root/`` (artifacts), ``metadata.sqlite``
(ML Metadata, unless the config's ``[metadata]`` section names another file or
a MySQL/MariaDB server shared by several homes, see :mod:`pipeline.metadata_store`)
and ``bucket/`` (published models, unless the config names a bucket). This
module only chooses the orchestrator and those paths; the ``shelf-audit run``
command adds the flags, the logs and the summary.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections.abc import Sequence
from typing import Any

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import runtime_parameter_utils

from pipeline import config as config_lib
from pipeline import metadata_store
from pipeline.pipeline import RunInputs, create_pipeline, run_inputs

log = logging.getLogger("shelf_audit.run")


@dataclasses.dataclass(frozen=True)
class LocalPaths:
    """Where a local run under ``home`` keeps its artifacts, metadata and (default) bucket."""

    home: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.home, "pipeline_root")

    @property
    def metadata(self) -> str:
        """The default SQLite file (``metadata.kind = "sqlite"`` without a ``path``)."""
        return os.path.join(self.home, metadata_store.SQLITE_FILE)

    @property
    def bucket(self) -> str:
        return os.path.join(self.home, "bucket")


# Beam options through which a pipeline ships its code to workers; TFX adds its own sdist when none is set.
_CODE_SHIPPING_OPTIONS = (
    "extra_packages",
    "setup_file",
    "requirements_file",
    "worker_harness_container_image",
    "sdk_container_image",
)


def tfx_builds_its_own_package(beam_args: Sequence[str]) -> bool:
    """Whether TFX will package itself in every Beam stage of a run with these ``beam_args``.

    TFX's Beam executors, given any Beam arguments but none of
    :data:`_CODE_SHIPPING_OPTIONS`, copy the TFX installation to the temp
    folder and build an sdist of it for remote workers (``--extra_package``):
    1-2 s per stage and about 50 MB each that are never removed. The
    DirectRunner needs none of it; with no ``beam_args`` TFX skips it.
    """
    if not beam_args:
        return False
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(flags=list(beam_args)).get_all_options()
    return not any(options.get(name) for name in _CODE_SHIPPING_OPTIONS)


def new_run_id() -> str:
    """A run id as LocalDagRunner makes them (the start time); the name of the run's ``pipeline_run`` context."""
    return datetime.datetime.now().isoformat()


class _RunIdDagRunner(LocalDagRunner):
    """LocalDagRunner with a run id chosen by the caller, so the run can be found again in a shared store."""

    def __init__(self, run_id: str):
        super().__init__()
        self._run_id = run_id

    def run_with_ir(self, pipeline: Any, run_options: Any = None, **kwargs: Any) -> Any:
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: self._run_id}
        )
        return super().run_with_ir(pipeline, run_options=run_options, **kwargs)


def run(
    config: config_lib.PipelineConfig,
    home: str,
    source_revision: str = "",
    metadata_password: str | None = None,
    run_id: str | None = None,
    inputs: RunInputs | None = None,
) -> metadata_store_pb2.ConnectionConfig:
    """Run the pipeline under ``home``; return the ML Metadata connection it wrote to.

    Args:
        config: validated pipeline configuration; ``config.metadata`` chooses the store.
        home: pipeline root, default SQLite file and default bucket live here.
        source_revision: code revision recorded in the bucket manifest's lineage.
        metadata_password: the MySQL password (``metadata.kind = "mysql"``), read from the environment by the CLI.
        run_id: the run's id (default :func:`new_run_id`); the run summary reads the run by it.
        inputs: the run inputs with the span window already resolved (``shelf-audit run`` resolves it once);
            None: made from the config here.

    Raises:
        MetadataStoreError: the store cannot be opened (before any stage runs).
        Exception: whatever a failing stage raised.
    """
    paths = LocalPaths(os.path.abspath(home))
    os.makedirs(paths.home, exist_ok=True)
    connection = metadata_store.connection_config(config.metadata, paths.home, metadata_password)
    metadata_store.open_store(connection)  # a wrong host or password fails here, not after ExampleGen
    run_id = run_id or new_run_id()
    if tfx_builds_its_own_package(config.beam_args):
        log.warning(
            "beam_args %s ship no code (no %s): TFX builds an sdist of itself in every Beam stage, for remote "
            "workers (1-2 s and ~50 MB left in the temp folder each). The DirectRunner needs none of it: without "
            "beam_args (its defaults: one worker, in memory) TFX skips it.",
            list(config.beam_args),
            "/".join(f"--{name}" for name in _CODE_SHIPPING_OPTIONS),
        )
    if inputs is None:
        inputs = run_inputs(config, os.path.abspath(config.data.input_base), config.push.bucket or paths.bucket)
    dag = create_pipeline(
        config,
        pipeline_root=paths.pipeline_root,
        inputs=inputs,
        metadata_connection_config=connection,
        source_revision=source_revision,
    )
    try:
        _RunIdDagRunner(run_id).run(dag)
    finally:
        # Also after a failed stage: the summary of this home then shows where it stopped.
        try:
            if not metadata_store.label_run(connection, run_id, paths.pipeline_root):
                log.warning("run %s left no record in ML Metadata to label with its home", run_id)
        except Exception as e:  # noqa: BLE001 - never hide the run's own outcome behind this.
            log.warning("could not label run %s with its home %s in ML Metadata: %s", run_id, paths.home, e)
    return connection
