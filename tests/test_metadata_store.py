"""Unit tests of the ``[metadata]`` config section and pipeline.metadata_store, no database server needed.

The same store on a real MySQL/MariaDB server, shared by two homes, is
tests/test_metadata_store_mysql.py (tier ``mysql``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from unittest import mock

import pytest
from ml_metadata import metadata_store as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from pipeline import config as config_lib
from pipeline import local_runner, metadata_store, run_summary
from pipeline.config import ConfigError, MetadataConfig
from shelf_audit import cli, run_cmd

pytestmark = pytest.mark.unit

MYSQL = {"kind": "mysql", "host": "db.internal", "database": "shelf_ml", "user": "shelf"}
PASSWORD = "s3cret-Pw!"


def _mysql(**overrides) -> MetadataConfig:
    return config_lib.from_dict({"metadata": {**MYSQL, **overrides}}).metadata


# --- The [metadata] section --------------------------------------------------


def test_default_is_sqlite_under_the_home():
    config = config_lib.PipelineConfig()
    assert config.metadata == MetadataConfig(kind="sqlite", path="", password_env="SHELF_AUDIT_MYSQL_PASSWORD")
    assert "metadata" in config_lib.to_dict(config)


def test_mysql_section_loads_with_default_port_and_variable():
    m = _mysql()
    assert (m.kind, m.host, m.port, m.database, m.user) == ("mysql", "db.internal", 3306, "shelf_ml", "shelf")
    assert m.password_env == "SHELF_AUDIT_MYSQL_PASSWORD"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"kind": "postgres"}, ["metadata.kind must be 'sqlite' or 'mysql'", "metadata.kind='postgres'"]),
        ({"kind": "sqlite", "host": "db"}, ["metadata.host only applies to metadata.kind = 'mysql'", "='db'"]),
        ({**MYSQL, "path": "m.sqlite"}, ["metadata.path only applies to metadata.kind = 'sqlite'", "'m.sqlite'"]),
        ({**MYSQL, "host": ""}, ["metadata.host must be set when metadata.kind = 'mysql'", "metadata.host=''"]),
        ({"kind": "mysql", "host": "db", "user": "u"}, ["metadata.database must be set", "metadata.database=''"]),
        ({**MYSQL, "user": ""}, ["metadata.user must be set", "metadata.user=''"]),
        ({**MYSQL, "port": 0}, ["metadata.port must be in [1, 65535]", "metadata.port=0"]),
        ({**MYSQL, "port": "3306"}, ["metadata.port must be an integer", "metadata.port='3306'"]),
        ({**MYSQL, "database": "shelf-ml"}, ["metadata.database must be 1 to 64 letters", "'shelf-ml'"]),
        ({**MYSQL, "password_env": "hunter2 pw"}, ["metadata.password_env must name an environment variable"]),
        ({**MYSQL, "password": "x"}, ["unknown key metadata.password", "password_env"]),
    ],
)
def test_invalid_metadata_names_key_and_value(table, expected):
    with pytest.raises(ConfigError) as excinfo:
        config_lib.from_dict({"metadata": table})
    for fragment in expected:
        assert fragment in str(excinfo.value)


# --- The ConnectionConfig ------------------------------------------------------


def test_sqlite_connection_is_the_file_under_the_home(tmp_path):
    connection = metadata_store.connection_config(MetadataConfig(), str(tmp_path))
    assert connection.WhichOneof("config") == "sqlite"
    assert connection.sqlite.filename_uri == str(tmp_path / "metadata.sqlite")
    assert connection.sqlite.filename_uri == local_runner.LocalPaths(str(tmp_path)).metadata
    assert connection.sqlite.connection_mode == metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE


def test_sqlite_connection_takes_an_explicit_path(tmp_path):
    config = config_lib.from_dict({"metadata": {"path": str(tmp_path / "shared" / "m.sqlite")}}).metadata
    connection = metadata_store.connection_config(config, str(tmp_path / "home"), password="ignored")
    assert connection.sqlite.filename_uri == str(tmp_path / "shared" / "m.sqlite")
    assert "ignored" not in str(connection)


def test_mysql_connection_carries_every_field_and_the_password_given():
    connection = metadata_store.connection_config(_mysql(port=3307), "/unused/home", PASSWORD)
    assert connection.WhichOneof("config") == "mysql"
    m = connection.mysql
    assert (m.host, m.port, m.database, m.user, m.password) == ("db.internal", 3307, "shelf_ml", "shelf", PASSWORD)


def test_mysql_connection_without_password_names_the_variable():
    with pytest.raises(metadata_store.MetadataStoreError, match="SHELF_AUDIT_MYSQL_PASSWORD"):
        metadata_store.connection_config(_mysql(), "/unused/home", None)


def test_describe_names_the_store_never_the_password(tmp_path):
    assert metadata_store.describe(MetadataConfig(), str(tmp_path)) == f"SQLite {tmp_path / 'metadata.sqlite'}"
    text = metadata_store.describe(_mysql(password_env="SHELF_ML_PW"), "/unused/home")
    assert text == "MySQL shelf@db.internal:3306/shelf_ml (password from $SHELF_ML_PW)"


# --- The password variable -------------------------------------------------------


def test_password_comes_from_the_variable_the_config_names():
    assert metadata_store.password_from_env(_mysql(password_env="SHELF_ML_PW"), {"SHELF_ML_PW": PASSWORD}) == PASSWORD
    assert metadata_store.password_from_env(MetadataConfig(), {}) is None


@pytest.mark.parametrize(("environ", "why"), [({}, "which is not set"), ({"SHELF_ML_PW": ""}, "which is empty")])
def test_missing_password_variable_is_named(environ, why):
    with pytest.raises(metadata_store.MetadataStoreError) as excinfo:
        metadata_store.password_from_env(_mysql(password_env="SHELF_ML_PW"), environ)
    assert "SHELF_ML_PW" in str(excinfo.value) and why in str(excinfo.value)


def _mysql_config_file(tmp_path: Path, port: int = 3306) -> config_lib.PipelineConfig:
    (tmp_path / "data").mkdir()
    return config_lib.from_dict(
        {
            "data": {"input_base": str(tmp_path / "data")},
            "metadata": {**MYSQL, "host": "127.0.0.1", "port": port, "password_env": "SHELF_UNIT_TEST_PW"},
        }
    )


def test_run_without_the_password_variable_stops_before_anything_runs(tmp_path, caplog):
    config = _mysql_config_file(tmp_path)
    with mock.patch.dict(os.environ):
        os.environ.pop("SHELF_UNIT_TEST_PW", None)
        status = run_cmd.run_pipeline(config, str(tmp_path / "home"))
    assert status == cli.EXIT_ERROR
    assert "SHELF_UNIT_TEST_PW, which is not set" in caplog.text
    assert not (tmp_path / "home").exists()


def test_unreachable_server_fails_before_any_stage_and_hides_the_password(tmp_path, caplog):
    config = _mysql_config_file(tmp_path, port=1)  # nothing listens on port 1
    caplog.set_level(logging.INFO, logger="shelf_audit.run")
    started = time.time()
    with mock.patch.dict(os.environ, {"SHELF_UNIT_TEST_PW": PASSWORD}):
        status = run_cmd.run_pipeline(config, str(tmp_path / "home"))
    assert status == cli.EXIT_ERROR
    assert "cannot open ML Metadata at MySQL shelf@127.0.0.1:1/shelf_ml" in caplog.text
    assert "ML Metadata MySQL shelf@127.0.0.1:1/shelf_ml (password from $SHELF_UNIT_TEST_PW)" in caplog.text
    assert PASSWORD not in caplog.text
    assert not (tmp_path / "home" / "pipeline_root").exists()
    assert time.time() - started < 60


def test_redact_filter_blanks_the_password_tfx_logs():
    connection = metadata_store.connection_config(_mysql(), "/unused/home", PASSWORD)
    # What LocalDagRunner logs when a run starts.
    record = logging.LogRecord(
        "absl", logging.INFO, __file__, 1, "Using connection config:\n %s", (connection.mysql,), None
    )
    assert metadata_store.RedactPasswords().filter(record)
    message = record.getMessage()
    assert PASSWORD not in message
    assert 'password: "<redacted>"' in message and 'host: "db.internal"' in message
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "ML Metadata %s", ("MySQL a@b (password from $V)",), None)
    metadata_store.RedactPasswords().filter(plain)
    assert plain.getMessage() == "ML Metadata MySQL a@b (password from $V)"


# --- Runs of several homes in one store ----------------------------------------------


def _fake_run(store: mlmd.MetadataStore, pipeline_ctx_id: int, run_id: str, trainer_state: int) -> int:
    """One pipeline_run context holding one Trainer execution, like LocalDagRunner leaves them."""
    [type_id] = [t.id for t in store.get_execution_types() if t.name == "Trainer"]
    [execution_id] = store.put_executions(
        [metadata_store_pb2.Execution(type_id=type_id, last_known_state=trainer_state)]
    )
    run_type = store.get_context_type("pipeline_run").id
    node_type = store.get_context_type("node").id
    [run_ctx] = store.put_contexts([metadata_store_pb2.Context(type_id=run_type, name=run_id)])
    node = store.get_context_by_type_and_name("node", "p.Trainer")
    node_ctx = (
        node.id if node else store.put_contexts([metadata_store_pb2.Context(type_id=node_type, name="p.Trainer")])[0]
    )
    associations = [
        metadata_store_pb2.Association(context_id=c, execution_id=execution_id)
        for c in (pipeline_ctx_id, run_ctx, node_ctx)
    ]
    store.put_attributions_and_associations([], associations)
    time.sleep(0.01)  # distinct create times
    return execution_id


def test_each_home_reads_its_own_run_from_a_shared_store(tmp_path):
    connection = metadata.sqlite_metadata_connection_config(str(tmp_path / "shared.sqlite"))
    store = metadata_store.open_store(connection)
    store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    for name in ("pipeline", "pipeline_run", "node"):
        store.put_context_type(metadata_store_pb2.ContextType(name=name))
    [pipeline_ctx] = store.put_contexts(
        [metadata_store_pb2.Context(type_id=store.get_context_type("pipeline").id, name="p")]
    )
    complete, cached = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED
    _fake_run(store, pipeline_ctx, "run-a", complete)
    _fake_run(store, pipeline_ctx, "run-b", cached)
    assert metadata_store.label_run(connection, "run-a", str(tmp_path / "a" / "pipeline_root"))
    assert metadata_store.label_run(connection, "run-b", str(tmp_path / "b" / "pipeline_root"))
    assert not metadata_store.label_run(connection, "never-ran", str(tmp_path / "c"))

    def read(**kwargs):
        run_id, stages = run_summary.read_stages(store, "p", **kwargs)
        return run_id, [(s.node_id, s.state) for s in stages]

    assert read(pipeline_root=str(tmp_path / "a" / "pipeline_root")) == ("run-a", [("Trainer", "COMPLETE")])
    assert read(pipeline_root=str(tmp_path / "b" / "pipeline_root")) == ("run-b", [("Trainer", "CACHED")])
    assert read() == ("run-b", [("Trainer", "CACHED")])  # no home given: the latest run of the store
    assert read(run_id="run-a")[0] == "run-a"
    with pytest.raises(LookupError, match=r"no run of pipeline p from .*/c/pipeline_root in ML Metadata"):
        read(pipeline_root=str(tmp_path / "c" / "pipeline_root"))
    with pytest.raises(LookupError, match="no run run-b of pipeline p from"):
        read(run_id="run-b", pipeline_root=str(tmp_path / "a" / "pipeline_root"))
    [labelled] = [c for c in store.get_contexts_by_type("pipeline_run") if c.name == "run-a"]
    assert labelled.custom_properties[metadata_store.RUN_HOST].string_value
