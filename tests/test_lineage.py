"""`shelf-audit models lineage` over a hand-built ML Metadata store and bucket (pipeline/lineage.py).

The store mimics what a TFX run writes: ImportExampleGen -> examples (span,
version, input_fingerprint) -> Transform -> transformed examples -> Trainer
-> model, with node and pipeline_run contexts. The real thing is walked in
tests/test_nothing_new.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shelf_audit import cli

pytestmark = pytest.mark.component

VERSION = "20261125T120000Z-abcdef"
FINGERPRINT = "split:single_split,num_files:1,total_bytes:1234,xor_checksum:5,sum_checksum:5"


@dataclasses.dataclass(frozen=True)
class Published:
    """A home with an ML Metadata store, a bucket with one version, and the ids in both."""

    home: Path
    bucket: Path
    ids: dict[str, int]


def _open(path: Path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    connection = pb.ConnectionConfig()
    connection.sqlite.filename_uri = str(path)
    connection.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(connection)


def _build_store(home: Path, root: str) -> dict[str, int]:
    """ExampleGen -> Transform -> Trainer as a TFX run records it; returns the ids."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    home.mkdir(parents=True)
    store = _open(home / "metadata.sqlite")
    examples_type = store.put_artifact_type(pb.ArtifactType(name="Examples"))
    model_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    schema_type = store.put_artifact_type(pb.ArtifactType(name="Schema"))
    run_type = store.put_context_type(pb.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(pb.ContextType(name="node"))

    def artifact(type_id: int, uri: str, **custom) -> int:
        a = pb.Artifact(type_id=type_id, uri=uri, state=pb.Artifact.LIVE)
        for key, value in custom.items():
            field = "int_value" if isinstance(value, int) else "string_value"
            setattr(a.custom_properties[key], field, value)
        return store.put_artifacts([a])[0]

    def execution(node: str, run: int, inputs: dict[str, int], outputs: dict[str, int]) -> int:
        exec_type = store.put_execution_type(pb.ExecutionType(name=f"tfx.{node}"))
        events = []
        for kind, table in ((pb.Event.INPUT, inputs), (pb.Event.OUTPUT, outputs)):
            for key, artifact_id in table.items():
                event = pb.Event(artifact_id=artifact_id, type=kind)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                events.append(event)
        done = pb.Execution(type_id=exec_type, last_known_state=pb.Execution.COMPLETE)
        execution_id = store.put_executions([done])[0]
        for event in events:
            event.execution_id = execution_id
        store.put_events(events)
        node_ctx = store.put_contexts([pb.Context(type_id=node_type, name=f"tiny.{node}")])[0]
        associations = [pb.Association(execution_id=execution_id, context_id=c) for c in (node_ctx, run)]
        store.put_attributions_and_associations([], associations)
        return execution_id

    run = store.put_contexts([pb.Context(type_id=run_type, name="run-1")])[0]
    ids = {
        "examples": artifact(
            examples_type, f"{root}/ImportExampleGen/examples/1", span=1, version=0, input_fingerprint=FINGERPRINT
        ),
        "schema": artifact(schema_type, f"{root}/ImportSchemaGen/schema/2"),
        "transformed": artifact(examples_type, f"{root}/Transform/transformed_examples/4"),
        "model": artifact(model_type, f"{root}/Trainer/model/6"),
    }
    ids["example_gen_exec"] = execution("ImportExampleGen", run, {}, {"examples": ids["examples"]})
    ids["transform_exec"] = execution(
        "Transform",
        run,
        {"examples": ids["examples"], "schema": ids["schema"]},
        {"transformed_examples": ids["transformed"]},
    )
    ids["trainer_exec"] = execution(
        "Trainer", run, {"examples": ids["transformed"], "schema": ids["schema"]}, {"model": ids["model"]}
    )
    return ids


def _write_manifest(bucket: Path, root: str, ids: dict[str, int], model_uri: str | None = None) -> None:
    folder = bucket / "shelf_audit" / "versions" / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    lineage = {
        "pipeline_name": "tiny",
        "pipeline_run_id": "run-1",
        "mlmd": {
            "model_artifact_id": ids["model"],
            "model_uri": model_uri or f"{root}/Trainer/model/6",
            "transformed_examples_artifact_id": ids["transformed"],
            "transformed_examples_uri": f"{root}/Transform/transformed_examples/4",
            "examples_artifact_ids": [ids["examples"]],
        },
        "spans": [1],
        "examples": [
            {
                "artifact_id": ids["examples"],
                "span": 1,
                "spans": [1],
                "version": 0,
                "input_fingerprint": FINGERPRINT,
                "uri": f"{root}/ImportExampleGen/examples/1",
            }
        ],
        "inputs_digest": "d" * 64,
    }
    (folder / "manifest.json").write_text(json.dumps({"version": VERSION, "lineage": lineage}))
    (bucket / "shelf_audit" / "LATEST").write_text(VERSION)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    """A home whose store holds the run that published VERSION to the bucket."""
    base = tmp_path_factory.mktemp("lineage")
    root = str(base / "home" / "pipeline_root")
    ids = _build_store(base / "home", root)
    _write_manifest(base / "bucket", root, ids)
    return Published(base / "home", base / "bucket", ids)


def test_lineage_walks_ml_metadata_from_the_model_to_the_spans(published, capsys):
    ids = published.ids
    assert cli.main(["models", "lineage", "--bucket", str(published.bucket), "--home", str(published.home)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"version {VERSION}")
    assert lines[1] == "  -> pipeline run run-1  (pipeline tiny)"
    trainer, transform = ids["trainer_exec"], ids["transform_exec"]
    assert lines[2].startswith(f"  -> model: artifact {ids['model']}, made by Trainer (execution {trainer})")
    assert lines[3].startswith(
        f"  -> transformed examples: artifact {ids['transformed']}, made by Transform (execution {transform})"
    )
    assert lines[4].startswith(
        f"  -> ExampleGen examples: artifact {ids['examples']}, made by ImportExampleGen "
        f"(execution {ids['example_gen_exec']}), span 1, version 0, input {FINGERPRINT}"
    )
    assert lines[4].endswith("/ImportExampleGen/examples/1")
    assert lines[5] == "  -> spans 1"
    assert lines[6] == f"(from ML Metadata at {published.home / 'metadata.sqlite'})"


def test_without_the_store_the_chain_comes_from_the_manifest_and_stderr_says_so(published, tmp_path, capsys):
    ids = published.ids
    missing = tmp_path / "nowhere"
    assert cli.main(["models", "lineage", "--bucket", str(published.bucket), "--home", str(missing), VERSION]) == 0
    out, err = capsys.readouterr()
    assert f"ML Metadata not used (no ML Metadata file {missing / 'metadata.sqlite'})" in err
    assert "the manifest's record alone" in err
    assert f"  -> model: artifact {ids['model']}  " in out
    assert f"  -> ExampleGen examples: artifact {ids['examples']}, span 1, version 0, input {FINGERPRINT}" in out
    assert "made by" not in out and out.rstrip().endswith("(from the manifest)")
    assert not missing.exists()  # a missing store is reported, never created
    # No store named at all.
    assert cli.main(["models", "lineage", "--bucket", str(published.bucket)]) == 0
    out, err = capsys.readouterr()
    assert "no ML Metadata store given" in err and "  -> spans 1" in out


def test_a_store_of_another_run_is_not_trusted(published, tmp_path, capsys):
    # Same ids, other model: artifact ids are per store, so the uri decides.
    bucket = tmp_path / "bucket"
    _write_manifest(bucket, "/elsewhere/pipeline_root", published.ids)
    assert cli.main(["models", "lineage", "--bucket", str(bucket), "--home", str(published.home)]) == 0
    out, err = capsys.readouterr()
    assert "this is not the store of the run that published it" in err
    assert "(from the manifest)" in out and "made by" not in out


def test_an_unknown_version_is_an_error(published, capsys):
    assert cli.main(["models", "lineage", "--bucket", str(published.bucket), "20000101T000000Z-000000"]) == 1
    assert "no complete version '20000101T000000Z-000000'" in capsys.readouterr().err


def test_list_show_and_lineage_do_not_import_tensorflow(published):
    probe = (
        "import sys\n"
        "from shelf_audit import cli\n"
        "status = cli.main(sys.argv[1:])\n"
        "print('TENSORFLOW IMPORTED' if 'tensorflow' in sys.modules else 'no tensorflow', file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    bucket, home = str(published.bucket), str(published.home)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for args in (["list"], ["show"], ["lineage", "--home", home]):
        cmd = [sys.executable, "-c", probe, "models", *args, "--bucket", bucket]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().endswith("no tensorflow"), (args, proc.stderr[-2000:])
        assert VERSION in proc.stdout
