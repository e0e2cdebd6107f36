"""Where a local run keeps ML Metadata: SQLite under its home, or a MySQL/MariaDB server several homes share.

:func:`connection_config` is the one place where the ``[metadata]`` config
section becomes ML Metadata's ``ConnectionConfig``; the local runner and the
run summary both go through it. The MySQL password never goes in the config:
``metadata.password_env`` names the environment variable that holds it, the
CLI reads that variable (:func:`password_from_env`) and passes the value down.

Homes sharing a store also share its pipeline contexts, so each run is
labelled with the pipeline root (the home) that ran it (:func:`label_run`);
the run summary of a home reads that home's runs only.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from pipeline.config import MetadataConfig

log = logging.getLogger("shelf_audit.metadata")

SQLITE_FILE = "metadata.sqlite"
# Custom properties on a run's ``pipeline_run`` context: which pipeline root ran it, and on which machine.
RUN_PIPELINE_ROOT = "shelf_audit_pipeline_root"
RUN_HOST = "shelf_audit_host"
PIPELINE_RUN_CONTEXT = "pipeline_run"


class MetadataStoreError(RuntimeError):
    """The ML Metadata store cannot be configured or opened; the message names the store and the cause."""


def sqlite_path(config: MetadataConfig, home: str) -> str:
    """The SQLite file of ``config`` (``metadata.path``, or ``<home>/metadata.sqlite``), absolute."""
    return os.path.abspath(config.path or os.path.join(home, SQLITE_FILE))


def password_from_env(config: MetadataConfig, environ: Mapping[str, str]) -> str | None:
    """The MySQL password from the variable ``config.password_env`` names; None for SQLite.

    Only the CLI calls this (with ``os.environ``); everything below it takes the password as an argument.

    Raises:
        MetadataStoreError: ``kind = "mysql"`` and the variable is unset or empty.
    """
    if config.kind != "mysql":
        return None
    password = environ.get(config.password_env)
    if password is None:
        raise MetadataStoreError(
            f"metadata.kind = 'mysql' reads the MySQL password from the environment variable "
            f"{config.password_env}, which is not set (export it, or name another variable in metadata.password_env)"
        )
    if not password:
        raise MetadataStoreError(
            f"metadata.kind = 'mysql' reads the MySQL password from the environment variable "
            f"{config.password_env}, which is empty"
        )
    return password


def describe(config: MetadataConfig, home: str) -> str:
    """The store in words, for logs: the SQLite file, or user@host:port/database (never the password)."""
    if config.kind == "sqlite":
        return f"SQLite {sqlite_path(config, home)}"
    return f"MySQL {config.user}@{config.host}:{config.port}/{config.database} (password from ${config.password_env})"


def connection_config(
    config: MetadataConfig, home: str, password: str | None = None
) -> metadata_store_pb2.ConnectionConfig:
    """ML Metadata's connection for ``config`` and ``home``.

    Args:
        config: the ``[metadata]`` section.
        home: the run's home; the default SQLite file lives there.
        password: the MySQL password (from :func:`password_from_env`); unused for SQLite.

    Raises:
        MetadataStoreError: ``kind = "mysql"`` without a password.
    """
    if config.kind == "sqlite":
        return metadata.sqlite_metadata_connection_config(sqlite_path(config, home))
    if not password:
        raise MetadataStoreError(
            f"no password for {describe(config, home)}: set the environment variable {config.password_env}"
        )
    return metadata.mysql_metadata_connection_config(
        host=config.host, port=config.port, database=config.database, username=config.user, password=password
    )


def _where(connection: metadata_store_pb2.ConnectionConfig) -> str:
    if connection.HasField("mysql"):
        m = connection.mysql
        return f"MySQL {m.user}@{m.host}:{m.port}/{m.database}"
    return f"SQLite {connection.sqlite.filename_uri}"


def open_store(connection: metadata_store_pb2.ConnectionConfig) -> metadata_store.MetadataStore:
    """Open the store (creating the SQLite file or the MySQL database and its tables on first use).

    Raises:
        MetadataStoreError: it cannot be opened; the message names the store, never the password.
    """
    try:
        return metadata_store.MetadataStore(connection)
    except Exception as e:  # noqa: BLE001 - ML Metadata raises RuntimeError and friends with terse messages.
        hint = ""
        if connection.HasField("mysql"):
            hint = (
                ". Check that the server answers at that host and port, that the user logs in with the password "
                "from the environment (mysql_native_password) and may create and use that database"
            )
            if connection.mysql.host == "localhost":
                hint += '; host "localhost" makes the client look for a Unix socket: use 127.0.0.1 for TCP'
        message = _PASSWORD_FIELD.sub(r'\1"<redacted>"', str(e)) or type(e).__name__
        raise MetadataStoreError(f"cannot open ML Metadata at {_where(connection)}: {message}{hint}") from None


def label_run(connection: metadata_store_pb2.ConnectionConfig, run_id: str, pipeline_root: str) -> bool:
    """Record on run ``run_id``'s ``pipeline_run`` context which pipeline root (home) and machine ran it.

    Returns False when the run left no context (it failed before its first stage).
    """
    store = open_store(connection)
    context = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)
    if context is None:
        return False
    context.custom_properties[RUN_PIPELINE_ROOT].string_value = os.path.abspath(pipeline_root)
    context.custom_properties[RUN_HOST].string_value = socket.gethostname()
    store.put_contexts([context])
    return True


def run_pipeline_root(context: metadata_store_pb2.Context) -> str | None:
    """The pipeline root recorded by :func:`label_run` on a ``pipeline_run`` context, if any."""
    if RUN_PIPELINE_ROOT not in context.custom_properties:
        return None
    return context.custom_properties[RUN_PIPELINE_ROOT].string_value


_PASSWORD_FIELD = re.compile(r'(password\s*[:=]\s*)("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S+)')


class RedactPasswords(logging.Filter):
    """Blank ``password: "..."`` in log records: TFX logs the whole connection config when a run starts."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "password" in message:
            redacted = _PASSWORD_FIELD.sub(r'\1"<redacted>"', message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True
