"""MySQL tier: two homes share one ML Metadata store on a real MySQL/MariaDB server.

``.ci/run`` installs and starts Debian's MariaDB and creates the test user
(``.ci/run --services-only`` does just that); the connection details come
from ``SHELF_AUDIT_TEST_MYSQL_HOST/PORT/USER/PASSWORD``, whose defaults are
the ones ``.ci/run`` sets up. Each quick test gets a fresh database, and the
two-home runs one for the tests that read them; each is dropped afterwards.
Only when no server answers do the tests skip, naming the connection error;
a server that refuses the test user fails them.

The tiny pipeline runs twice through the real ``shelf-audit run`` (home A,
then home B, same photos and config), so this also pins what sharing a store
means: B reuses A's cached stages, and B's published model traces back
through A's Trainer to the examples of B's own ExampleGen stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pymysql
import pytest
from ml_metadata.proto import metadata_store_pb2
from support import tiny

from bucket import versions
from pipeline import config as config_lib
from pipeline import metadata_store, run_summary
from pipeline.eval_config import build_eval_config
from pipeline.pipeline import create_pipeline, run_inputs
from shelf_audit import cli, run_cmd
from shelf_data import synth

pytestmark = pytest.mark.mysql

PIPELINE = "tiny-shared"


@dataclasses.dataclass(frozen=True)
class Server:
    """Where the test server is and how the tests' user logs in."""

    host: str
    port: int
    user: str
    password: str

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, connect_timeout=5, autocommit=True
        )


# Client errors meaning no server answered (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR,
# CR_SERVER_LOST); anything else (e.g. 1045 access denied) fails the tests instead of skipping them.
_UNREACHABLE = (2002, 2003, 2006, 2013)


@pytest.fixture(scope="module")
def server() -> Server:
    """The test server (defaults = what .ci/run sets up); skip, naming the error, when it cannot be reached."""
    found = Server(
        host=os.environ.get("SHELF_AUDIT_TEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("SHELF_AUDIT_TEST_MYSQL_PORT", "3306")),
        user=os.environ.get("SHELF_AUDIT_TEST_MYSQL_USER", "shelf_audit_test"),
        password=os.environ.get("SHELF_AUDIT_TEST_MYSQL_PASSWORD", "shelf-audit-test-pw"),
    )
    try:
        found.connect().close()
    except pymysql.MySQLError as e:
        where = f"{found.user}@{found.host}:{found.port}"
        if e.args and e.args[0] in _UNREACHABLE:
            pytest.skip(
                f"no MySQL/MariaDB server answers for the mysql tier at {where}: {e} "
                "(`bash .ci/run --services-only` installs, starts and sets one up)"
            )
        # A server answers but refuses the test user: a broken setup, not a reason to skip.
        pytest.fail(f"the MySQL/MariaDB server at {where} refuses the tests: {e} (run `bash .ci/run --services-only`)")
    return found


@contextlib.contextmanager
def _fresh_database(server: Server, label: str) -> Iterator[str]:
    name = f"shelf_audit_test_{label}_{uuid.uuid4().hex[:8]}"
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        with server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def database(server: Server) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with _fresh_database(server, "t") as name:
        yield name


def _config_text(server: Server, database: str, settings: dict | None = None) -> str:
    metadata = {"kind": "mysql", "host": server.host, "port": server.port, "database": database, "user": server.user}
    return tiny.tiny_toml(PIPELINE, {"gate.max_drop": 1.0, "metadata": metadata, **(settings or {})})


@dataclasses.dataclass(frozen=True)
class Home:
    """One home's run through the CLI."""

    path: Path
    proc: subprocess.CompletedProcess

    @property
    def pipeline_root(self) -> str:
        return str(self.path / "pipeline_root")

    def explain(self) -> str:
        return tiny.explain(self.proc)


@dataclasses.dataclass(frozen=True)
class SharedRuns:
    """Homes A and B after one run each against one MySQL store."""

    server: Server
    config: config_lib.PipelineConfig
    a: Home
    b: Home

    def connection(self) -> metadata_store_pb2.ConnectionConfig:
        return metadata_store.connection_config(self.config.metadata, str(self.a.path), self.server.password)

    def summary(self, home: Home) -> run_summary.RunSummary:
        eval_config = build_eval_config({"ok": 1, "misplaced": 1, "damaged": 2}, 0, {}, None)
        return run_summary.summarize(self.connection(), PIPELINE, eval_config, pipeline_root=home.pipeline_root)


@pytest.fixture(scope="module")
def shared(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedRuns]:
    """One tiny run from home A, then one from home B (with --verbose), both into one fresh MySQL database."""
    tmp = tmp_path_factory.mktemp("shared_metadata")
    synth.generate(str(tmp / "data"), span=1, count=200, seed=11)
    with _fresh_database(server, "shared") as database:
        config_file = tmp / "tiny-shared.toml"
        config_file.write_text(_config_text(server, database))
        # The password travels only in the default variable metadata.password_env names.
        env = {"SHELF_AUDIT_MYSQL_PASSWORD": server.password}
        homes = {}
        for name, flags in (("a", []), ("b", ["--verbose"])):
            args = [*flags, "run", "--config", config_file, "--data", tmp / "data", "--home", tmp / f"home_{name}"]
            proc = tiny.run_cli(*args, env=env, timeout=1800)
            homes[name] = Home(tmp / f"home_{name}", proc)
        yield SharedRuns(server, config_lib.load(config_file), homes["a"], homes["b"])


# --- Quick checks on a fresh database --------------------------------------------


def test_wrong_password_stops_the_run_before_any_stage(server, database, tmp_path, caplog):
    (tmp_path / "data").mkdir()
    config_file = tmp_path / "c.toml"
    config_file.write_text(_config_text(server, database, {"data.input_base": str(tmp_path / "data")}))
    config = config_lib.load(config_file)
    with mock.patch.dict(os.environ, {"SHELF_AUDIT_MYSQL_PASSWORD": "not-the-password"}):
        status = run_cmd.run_pipeline(config, str(tmp_path / "home"))
    assert status == cli.EXIT_ERROR
    assert f"cannot open ML Metadata at MySQL {server.user}@{server.host}:{server.port}/{database}" in caplog.text
    assert "not-the-password" not in caplog.text
    assert not (tmp_path / "home" / "pipeline_root").exists()


def test_store_opens_and_creates_its_tables_in_the_fresh_database(server, database):
    config = config_lib.from_dict(
        {
            "metadata": {
                "kind": "mysql",
                "host": server.host,
                "port": server.port,
                "database": database,
                "user": server.user,
            }
        }
    )
    store = metadata_store.open_store(metadata_store.connection_config(config.metadata, "/unused", server.password))
    assert store.get_contexts() == []
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"SHOW TABLES FROM `{database}`")
        tables = {row[0] for row in cursor.fetchall()}
    assert {"Artifact", "Execution", "Context", "Event"} <= tables


# --- Two homes, one store ------------------------------------------------------------


def test_both_homes_run_against_mysql_and_bless(shared):
    for home in (shared.a, shared.b):
        assert home.proc.returncode == 0, home.explain()
        assert "verdict: BLESSED" in home.proc.stdout, home.explain()
        store = f"ML Metadata MySQL {shared.server.user}@{shared.server.host}:{shared.server.port}/"
        assert store in home.proc.stderr and "(password from $SHELF_AUDIT_MYSQL_PASSWORD)" in home.proc.stderr
        assert not (home.path / "metadata.sqlite").exists()
        assert len(versions.list_versions(str(home.path / "bucket"), "shelf_audit")) == 1


def test_the_password_is_never_logged(shared):
    for home in (shared.a, shared.b):
        assert shared.server.password not in home.proc.stdout + home.proc.stderr
    # B ran with --verbose: TFX printed its connection config there, with the password blanked.
    assert 'password: "<redacted>"' in shared.b.proc.stderr


def test_one_store_holds_both_runs(shared):
    store = metadata_store.open_store(shared.connection())
    runs = {metadata_store.run_pipeline_root(c): c for c in store.get_contexts_by_type("pipeline_run")}
    assert set(runs) == {shared.a.pipeline_root, shared.b.pipeline_root}
    stages = len(create_pipeline(shared.config, "root", run_inputs(shared.config, "data", "bucket")).components)
    for run in runs.values():
        assert len(store.get_executions_by_context(run.id)) == stages
    uris = [a.uri for a in store.get_artifacts()]
    assert any(uri.startswith(shared.a.pipeline_root + "/") for uri in uris)
    assert any(uri.startswith(shared.b.pipeline_root + "/") for uri in uris)


def test_each_home_summary_reads_its_own_run(shared):
    a, b = shared.summary(shared.a), shared.summary(shared.b)
    assert a.run_id != b.run_id
    assert f"run {a.run_id}\n" in shared.a.proc.stdout and f"run {b.run_id}\n" in shared.b.proc.stdout
    assert a.blessed and b.blessed and a.pushed["pushed"] == 1 and b.pushed["pushed"] == 1
    assert a.pushed["pushed_destination"].startswith(str(shared.a.path / "bucket") + "/")
    assert b.pushed["pushed_destination"].startswith(str(shared.b.path / "bucket") + "/")
    # Same pipeline name and inputs in one store: B reused A's cached training.
    assert a.stage("Trainer").state == "COMPLETE"
    assert b.stage("Trainer").state == "CACHED"
    assert b.stage("Trainer").outputs["model"][0].uri.startswith(shared.a.pipeline_root + "/")
    assert b.stage("TFLitePusher").outputs["pushed_model"][0].uri.startswith(shared.b.pipeline_root + "/")


def _producers(store, artifact_id: int) -> list[metadata_store_pb2.Execution]:
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == e.OUTPUT]
    return store.get_executions_by_id([e.execution_id for e in events])


def _input(store, execution_id: int, key: str) -> metadata_store_pb2.Artifact:
    events = store.get_events_by_execution_ids([execution_id])
    [artifact_id] = [e.artifact_id for e in events if e.type == e.INPUT and e.path.steps[0].key == key]
    [artifact] = store.get_artifacts_by_id([artifact_id])
    return artifact


def test_lineage_from_the_second_published_model_back_to_its_examples(shared):
    b = shared.summary(shared.b)
    store = metadata_store.open_store(shared.connection())
    node_of = {  # execution id -> node id, e.g. "Trainer"
        e.id: c.name.split(".", 1)[-1]
        for c in store.get_contexts_by_type("node")
        for e in store.get_executions_by_context(c.id)
    }
    run_of = {
        e.id: metadata_store.run_pipeline_root(c)
        for c in store.get_contexts_by_type("pipeline_run")
        for e in store.get_executions_by_context(c.id)
    }

    def produced_by(artifact: metadata_store_pb2.Artifact, node: str) -> metadata_store_pb2.Execution:
        """The execution that really made ``artifact`` (cached executions only point at it)."""
        [execution] = [e for e in _producers(store, artifact.id) if e.last_known_state == e.COMPLETE]
        assert node_of[execution.id] == node, (node_of[execution.id], node)
        return execution

    pushed = b.stage("TFLitePusher").outputs["pushed_model"][0]
    pusher = produced_by(pushed, "TFLitePusher")
    trainer = produced_by(_input(store, pusher.id, "model"), "Trainer")
    transform = produced_by(_input(store, trainer.id, "examples"), "Transform")
    examples = _input(store, transform.id, "examples")
    example_gen = produced_by(examples, "ImportExampleGen")
    # The walk crosses homes: B published, A trained; the examples are those of B's own ExampleGen stage.
    assert run_of[pusher.id] == shared.b.pipeline_root
    assert run_of[trainer.id] == run_of[example_gen.id] == shared.a.pipeline_root
    assert examples.id == b.stage("ImportExampleGen").outputs["examples"][0].id
    assert pushed.custom_properties["pushed"].int_value == 1
