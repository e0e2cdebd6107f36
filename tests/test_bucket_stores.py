"""The model bucket on gs:// and s3://, against local servers: gcp-storage-emulator and moto (tests/support/stores.py).

Each test runs on both stores, in a fresh prefix of the servers' bucket: publishing real tiny TFLite versions,
``shelf-audit models`` list/show/verify/rollback/clean, concurrent publishers and rollbacks, publishes killed at
each step, create-only writes, and what the app does: plain HTTP GETs of LATEST, the manifest, its signature and
the model, checked as the Android side checks them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from support import cli_helpers, stores
from support import tflite_helpers as helpers
from support.bucket_race import (
    KILLER,
    MODEL,
    STEPS,
    Killed,
    check_invariants,
    killed_at,
    leftovers,
    minutes_ago,
    payload,
    publish_one,
    publisher,
    rollbacker,
)

from bucket import history as bucket_history
from bucket import layout, publish, signing, storage, verify
from bucket import versions as bucket_versions
from shelf_audit import cli
from shelf_data.contract import LABELS
from shelf_tflite import runtime

pytestmark = pytest.mark.stores

T0 = datetime.datetime(2026, 11, 25, 12, 1, 2, tzinfo=datetime.timezone.utc)
PER_PUBLISHER = 5  # each publish is a few dozen requests to a server answering one at a time


@pytest.fixture(params=["gs", "s3"])
def store_bucket(request, object_stores) -> str:
    """A fresh, empty bucket prefix on the GCS emulator or the S3 server."""
    name = stores.GCS_BUCKET if request.param == "gs" else stores.S3_BUCKET
    return f"{request.param}://{name}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, bytes]:
    """Two different real fp32 TFLite models."""
    return helpers.fp32_models(tmp_path_factory.mktemp("store_models"), {"a": 0.0, "b": 0.5})


@pytest.fixture(scope="module")
def release_key() -> tuple[signing.Signer, bytes]:
    """An Ed25519 signer and its raw public key, as the app pins it."""
    private, public = signing.generate_private_key_pem()
    return signing.load_signer("env:KEY", {"KEY": private.decode()}), signing.load_public_key(public)


def _publish_model(bucket: str, model: bytes, now: datetime.datetime, signer=None) -> publish.PublishResult:
    images, labels = helpers.make_images(3, seed=5)
    out = runtime.run_tflite(model, images)
    golden = publish.build_golden(images, labels, out, {"model.tflite": out}, {"model.tflite": 1e-3}, LABELS)
    manifest = publish.build_manifest(
        model_name=MODEL,
        default_variant="fp32",
        variants={"fp32": {"file": "model.tflite", "bytes": len(model), "sha256": storage.sha256(model)}},
        labels=LABELS,
        gate_metrics={"overall": {"weighted_recall": 0.9}},
        lineage={},
        image_shape=runtime.input_image_shape(model),
    )
    files = {"model.tflite": model, "labels.txt": b"ok\nmisplaced\ndamaged\n"}
    return publish.publish(bucket, MODEL, files, manifest, golden, now=now, signer=signer)


def _models_cmd(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["models", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_publish_and_every_models_command(store_bucket, models, capsys):
    first = _publish_model(store_bucket, models["a"], T0)
    second = _publish_model(store_bucket, models["b"], T0 + datetime.timedelta(days=1))
    assert first.created and second.created and first.path.startswith(store_bucket)
    assert bucket_versions.list_versions(store_bucket, MODEL) == [first.version, second.version]

    status, out, err = _models_cmd(capsys, "list", "--bucket", store_bucket)
    assert status == 0, err
    assert f"*  {second.version}" in out and f"(* = LATEST: {second.version})" in out
    status, out, _ = _models_cmd(capsys, "show", "--bucket", store_bucket, first.version)
    assert status == 0 and json.loads(out)["version"] == first.version
    status, out, err = _models_cmd(capsys, "verify", "--bucket", store_bucket)
    assert status == 0, err
    assert out.startswith(f"ok {second.version}: unsigned;") and "models load and replay golden samples" in out

    status, out, err = _models_cmd(capsys, "rollback", "--bucket", store_bucket, "--reason", "field reports")
    assert status == 0, err
    assert out.strip() == f"LATEST: {second.version} -> {first.version}"
    assert bucket_versions.read_latest(store_bucket, MODEL) == first.version
    assert [e["action"] for e in bucket_history.read_history(store_bucket, MODEL)] == ["publish", "publish", "rollback"]

    # A killed publish's leftovers (staging and a version without a manifest, an hour old) go with `clean`.
    root = layout.model_root(store_bucket, MODEL)
    old = int(time.time()) - 7200
    staged = layout.join(root, layout.STAGING_DIR, f"20261125T000000Z-abcdef-{old}-0a0b0c", "model.tflite")
    partial = layout.join(root, layout.VERSIONS_DIR, "20200101T000000Z-123456", "model.tflite")
    storage.write(staged, b"x")
    storage.write(partial, b"x")
    status, out, err = _models_cmd(capsys, "clean", "--bucket", store_bucket, "--grace-minutes", "0")
    assert status == 0, err
    assert out.strip().endswith(f"2 leftover(s) removed; LATEST: {first.version}"), out
    assert not storage.exists(staged) and not storage.exists(partial)
    assert bucket_versions.version_folders(store_bucket, MODEL) == [first.version, second.version]
    assert verify.verify_version(store_bucket, MODEL, second.version).ok


def test_reading_commands_do_not_import_tensorflow(store_bucket):
    publish_one(store_bucket, "first")
    code = cli_helpers.READERS_WITHOUT_TENSORFLOW
    proc = subprocess.run([sys.executable, "-c", code, store_bucket], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_second_create_of_a_version_file_is_refused(store_bucket):
    version = publish_one(store_bucket, "first")
    folder = layout.version_dir(store_bucket, MODEL, version)
    before = storage.read(layout.join(folder, "model.tflite"))
    for name in ("model.tflite", layout.MANIFEST_FILE):
        path = layout.join(folder, name)
        with pytest.raises(layout.BucketError, match=f"^{path} already exists: not overwritten$"):
            storage.create(path, b"another model")
    event = bucket_history.read_history(store_bucket, MODEL)[0]["event"]
    with pytest.raises(layout.BucketError, match="already exists"):
        storage.create(layout.join(layout.model_root(store_bucket, MODEL), layout.HISTORY_DIR, event), b"{}")
    assert storage.read(layout.join(folder, "model.tflite")) == before
    assert verify.verify_version(store_bucket, MODEL, version, run_models=False).ok


def test_concurrent_publisher_processes_and_rollbacks(store_bucket):
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 4.0  # every child imported and waiting: the publishes really overlap
    with ctx.Pool(3) as pool:
        jobs = [pool.apply_async(publisher, (store_bucket, tag, PER_PUBLISHER, start)) for tag in ("p1", "p2")]
        rolls = pool.apply_async(rollbacker, (store_bucket, 3, start, start + 60))
        by_publisher = [job.get(timeout=180) for job in jobs]
        rolled = rolls.get(timeout=180)
    published = [v for versions in by_publisher for v in versions]
    assert len(published) == 2 * PER_PUBLISHER == len(set(published))
    assert len(rolled) == 3
    check_invariants(store_bucket, published)
    assert leftovers(store_bucket) == []


@pytest.mark.parametrize("step", STEPS)
def test_a_publish_killed_at_each_step_is_finished_by_a_rerun(store_bucket, step):
    first = publish_one(store_bucket, "first", now=minutes_ago(2))
    files, manifest = payload("second")
    with killed_at(step), pytest.raises(Killed):
        publish.publish(store_bucket, MODEL, files, manifest)
    latest = bucket_versions.read_latest(store_bucket, MODEL)
    assert bucket_versions.is_complete(store_bucket, MODEL, latest) and (latest != first) == (step == "latest")
    again = publish.publish(store_bucket, MODEL, files, manifest)
    assert bucket_versions.read_latest(store_bucket, MODEL) == again.version != first
    assert again.created == (STEPS.index(step) < STEPS.index("manifest"))
    publish.clean(store_bucket, MODEL, grace_seconds=0)
    assert leftovers(store_bucket) == []
    check_invariants(store_bucket, [first, again.version])


@pytest.mark.parametrize("step", ["copied", "manifest", "event"])
def test_a_publish_process_killed_with_sigkill_is_finished_by_a_rerun(store_bucket, step):
    first = publish_one(store_bucket, "first", now=minutes_ago(2))
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests)]))
    proc = subprocess.run([sys.executable, "-c", KILLER, store_bucket, step], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert bucket_versions.read_latest(store_bucket, MODEL) == first
    time.sleep(0.01)
    publish.rollback(store_bucket, MODEL, first, reason="during the outage")  # a rollback between kill and re-run
    files, manifest = payload("killed", unique=False)
    again = publish.publish(store_bucket, MODEL, files, manifest)
    expected = first if step in ("manifest", "event") else again.version  # a finished publish keeps the rollback
    assert bucket_versions.read_latest(store_bucket, MODEL) == expected
    check_invariants(store_bucket, [first, again.version])


def _public_url(bucket: str, key: str, servers: stores.Servers) -> str:
    """An unauthenticated URL for ``key`` under ``bucket`` (gs: the emulator's media link; s3: a presigned GET)."""
    scheme, rest = bucket.split("://", 1)
    name, prefix = rest.split("/", 1)
    obj = f"{prefix}/{key}"
    if scheme == "gs":
        return f"{servers.gcs_endpoint}/download/storage/v1/b/{name}/o/{urllib.parse.quote(obj, safe='')}?alt=media"
    return stores.s3_client(servers).generate_presigned_url(
        "get_object", Params={"Bucket": name, "Key": obj}, ExpiresIn=300
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_the_app_downloads_and_checks_latest_over_plain_http(store_bucket, object_stores, models, release_key):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    signer, pinned = release_key
    result = _publish_model(store_bucket, models["a"], T0, signer=signer)

    def fetch(key: str) -> bytes:
        return _get(_public_url(store_bucket, f"{MODEL}/{key}", object_stores))

    version = fetch(layout.LATEST_FILE).decode().strip()
    assert version == result.version
    manifest_bytes = fetch(f"versions/{version}/{layout.MANIFEST_FILE}")
    signature = fetch(f"versions/{version}/{layout.SIGNATURE_FILE}")
    ed25519.Ed25519PublicKey.from_public_bytes(pinned).verify(signature, manifest_bytes)  # raises if tampered
    manifest = json.loads(manifest_bytes)
    model = fetch(f"versions/{version}/{manifest['model_file']}")
    assert hashlib.sha256(model).hexdigest() == manifest["files"]["model.tflite"]["sha256"]
    images, _ = helpers.make_images(2, seed=9)
    probabilities = runtime.run_tflite(model, images)
    assert probabilities.shape == (2, len(manifest["labels"]))
    assert abs(float(probabilities.sum()) - 2.0) < 1e-4
