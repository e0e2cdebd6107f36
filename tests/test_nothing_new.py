"""Pipeline tier: a re-run with nothing new is cheap and says so; a new span trains; lineage back to the spans.

Three runs of the real ``shelf-audit run`` over one home, built once:

1. span 1: trains, blesses, publishes version A;
2. the same again: ``nothing new since A (spans 1)`` before any pipeline is
   built, exit 0, timed;
3. span 2 arrives: trains and publishes version B, whose manifest lists its
   span and ExampleGen artifact.

Then ``shelf-audit models lineage`` walks ML Metadata from B's model back to
span 2, and prints the manifest's record when the store is absent.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest
from support import tiny

from bucket import versions as bucket_versions
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from shelf_data import synth

pytestmark = pytest.mark.e2e

NAME = "tiny-lineage"
SETTINGS = {
    # A large eval split: with the default 8:1:1 a tiny span's eval split may hold no damaged photo.
    "data": {"train_buckets": 2, "validation_buckets": 1, "eval_buckets": 2},
    # Always blessed: the tiny eval split of a span may hold no damaged photo (its recall is then NaN,
    # which fails any per-class floor), and the second model must not be held to the first.
    "gate.max_drop": 1.0,
    "gate.class_recall_floors": {},
}
MODEL = "shelf_audit"
# An unchanged re-run ends in under a minute, imports included, on an idle 2-core machine (about 30 s:
# benchmarks/results.md, "rerun"). On a busy test machine the bound grows with the load, measured by
# the first run: never more than a fifth of a real (tiny) run.
CHEAP_SECONDS = 60
CHEAP_SHARE = 5


@dataclasses.dataclass
class Run:
    """One ``shelf-audit run``: its process, wall time, the bucket's versions after it and the expected digest."""

    proc: subprocess.CompletedProcess
    seconds: float
    versions: list[str]
    digest: str


@dataclasses.dataclass
class Home:
    """The runs over one home, and where things are."""

    tmp: Path
    config: Path
    data: Path
    home: Path
    bucket: Path
    runs: dict[str, Run]
    run_contexts: dict[str, int]  # ML Metadata pipeline_run contexts after each run


def _cli(*args: str | Path, timeout: int = 1200) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = tiny.run_cli(*args, timeout=timeout)
    return proc, time.monotonic() - started


def _expected_digest(config_path: Path, data: Path, bucket: Path) -> str:
    """The digest as `shelf-audit run --config C --data D` computes it for the data present now."""
    config = config_lib.load(config_path)
    config = config.replace(data=dataclasses.replace(config.data, input_base=str(data)))
    return pipeline_lib.inputs_digest(config, pipeline_lib.run_inputs(config, str(data), str(bucket))).digest


def _run_contexts(home: Path) -> int:
    from pipeline import lineage

    store = lineage.open_sqlite(str(home / "metadata.sqlite"))
    return len(store.get_contexts_by_type("pipeline_run"))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    tmp = tmp_path_factory.mktemp("nothing-new")
    config, data, home = tmp / "tiny.toml", tmp / "data", tmp / "home"
    tiny.write_tiny_config(config, NAME, SETTINGS)
    bucket = home / "bucket"
    synth.generate(str(data), span=1, count=200, seed=21)
    result = Home(tmp, config, data, home, bucket, {}, {})
    run = ["run", "--config", str(config), "--data", str(data), "--home", str(home)]
    for name in ("first", "unchanged", "new_span"):
        if name == "new_span":
            synth.generate(str(data), span=2, count=200, seed=22)
        proc, seconds = _cli(*run)
        versions = bucket_versions.list_versions(str(bucket), MODEL)
        result.runs[name] = Run(proc, seconds, versions, _expected_digest(config, data, bucket))
        result.run_contexts[name] = _run_contexts(home) if (home / "metadata.sqlite").exists() else 0
    return result


def _manifest(home: Home, version: str) -> dict:
    return json.loads((home.bucket / MODEL / "versions" / version / "manifest.json").read_text())


def _example_gen_artifacts(home: Home) -> dict[int, tuple[int, str]]:
    """ML Metadata: ExampleGen's examples artifacts, id -> (span, input fingerprint)."""
    from pipeline import lineage

    store = lineage.open_sqlite(str(home.home / "metadata.sqlite"))
    found = {}
    for artifact in store.get_artifacts_by_type("Examples"):
        if "span" in artifact.custom_properties:
            props = artifact.custom_properties
            found[artifact.id] = (props["span"].int_value, props["input_fingerprint"].string_value)
    return found


def test_first_run_publishes_a_version_with_its_span_and_digest(home):
    run = home.runs["first"]
    assert run.proc.returncode == 0, tiny.explain(run.proc)
    assert len(run.versions) == 1
    lineage = _manifest(home, run.versions[0])["lineage"]
    assert lineage["spans"] == [1]
    assert lineage["inputs_digest"] == run.digest
    [example] = lineage["examples"]
    assert _example_gen_artifacts(home)[example["artifact_id"]] == (1, example["input_fingerprint"])
    assert lineage["mlmd"]["examples_artifact_ids"] == [example["artifact_id"]]
    for key in ("model", "model_blessing", "model_evaluation", "transformed_examples"):
        assert isinstance(lineage["mlmd"][f"{key}_artifact_id"], int), key
    assert lineage["pipeline_run_id"] and lineage["source_revision"]
    assert "trained and evaluated on spans 1" in run.proc.stdout


def test_unchanged_rerun_stops_early_says_so_and_publishes_nothing(home):
    run, first = home.runs["unchanged"], home.runs["first"]
    assert run.proc.returncode == 0, tiny.explain(run.proc)
    assert run.proc.stdout.strip().splitlines()[-1] == f"nothing new since {first.versions[0]} (spans 1)"
    assert "use --force to run anyway" in run.proc.stderr
    assert run.versions == first.versions
    assert run.digest == first.digest
    # No pipeline was built: ML Metadata has no new run.
    assert home.run_contexts["unchanged"] == home.run_contexts["first"]
    bound = max(CHEAP_SECONDS, first.seconds / CHEAP_SHARE)
    assert run.seconds < bound, f"{run.seconds:.1f}s (first run {first.seconds:.1f}s)\n{tiny.explain(run.proc)}"


def test_a_new_span_trains_and_publishes_a_version_listing_it(home):
    run, first = home.runs["new_span"], home.runs["first"]
    assert run.proc.returncode == 0, tiny.explain(run.proc)
    assert "nothing new" not in run.proc.stdout
    [new] = sorted(set(run.versions) - set(first.versions))
    assert bucket_versions.read_latest(str(home.bucket), MODEL) == new
    lineage = _manifest(home, new)["lineage"]
    assert lineage["spans"] == [2] and lineage["inputs_digest"] == run.digest != first.digest
    [example] = lineage["examples"]
    first_examples = _manifest(home, first.versions[0])["lineage"]["mlmd"]["examples_artifact_ids"]
    assert example["span"] == 2 and example["artifact_id"] not in first_examples
    assert _example_gen_artifacts(home)[example["artifact_id"]] == (2, example["input_fingerprint"])
    assert "trained and evaluated on spans 2" in run.proc.stdout
    assert f"examples artifact {example['artifact_id']}" in run.proc.stdout


def test_models_lineage_walks_ml_metadata_back_to_the_span(home):
    new = home.runs["new_span"].versions[-1]
    lineage = _manifest(home, new)["lineage"]
    proc, _ = _cli("models", "lineage", "--bucket", str(home.bucket), "--home", str(home.home), new, timeout=300)
    assert proc.returncode == 0, tiny.explain(proc)
    assert "ML Metadata not used" not in proc.stderr, tiny.explain(proc)
    out = proc.stdout
    assert f"-> pipeline run {lineage['pipeline_run_id']}" in out
    assert f"-> model: artifact {lineage['mlmd']['model_artifact_id']}, made by Trainer" in out
    assert f"-> transformed examples: artifact {lineage['mlmd']['transformed_examples_artifact_id']}" in out
    assert "made by Transform" in out
    example = lineage["examples"][0]
    assert f"-> ExampleGen examples: artifact {example['artifact_id']}, made by ImportExampleGen" in out
    assert "span 2, version" in out and example["uri"] in out
    assert "-> spans 2\n" in out and f"(from ML Metadata at {home.home / 'metadata.sqlite'})" in out


def test_models_lineage_without_the_store_prints_the_manifest(home, tmp_path):
    new = home.runs["new_span"].versions[-1]
    example = _manifest(home, new)["lineage"]["examples"][0]
    proc, _ = _cli("models", "lineage", "--bucket", str(home.bucket), "--home", str(tmp_path), new, timeout=300)
    assert proc.returncode == 0, tiny.explain(proc)
    assert "ML Metadata not used (no ML Metadata file" in proc.stderr
    assert f"-> ExampleGen examples: artifact {example['artifact_id']}, span 2" in proc.stdout
    assert "made by" not in proc.stdout and "(from the manifest)" in proc.stdout
