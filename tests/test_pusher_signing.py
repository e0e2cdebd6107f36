"""The TFLite pusher signs with the key its source names, fails fast on a bad key, and finishes a killed publish."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from test_tflite_pusher import _run, artifacts, assert_pushed  # noqa: F401 - ``artifacts`` is a fixture

from bucket import history, publish, signing, verify, versions
from components.tflite_pusher import settings as push_settings
from shelf_tflite import build

pytestmark = pytest.mark.component

FAST = {push_settings.VARIANTS_KEY: json.dumps(["fp16"])}


@pytest.fixture
def key_file(tmp_path):
    """An Ed25519 private key file."""
    private, _ = signing.generate_private_key_pem()
    path = tmp_path / "release.pem"
    path.write_bytes(private)
    return path


def test_the_pusher_signs_with_the_configured_key_source(artifacts, tmp_path, key_file, monkeypatch):  # noqa: F811
    monkeypatch.delenv(signing.ENV_OVERRIDE, raising=False)
    bucket = str(tmp_path / "bucket")
    pushed = _run(artifacts, bucket, name="signed", **FAST, **{push_settings.SIGNING_KEY_KEY: f"file:{key_file}"})
    assert_pushed(pushed)
    signer = signing.load_signer(f"file:{key_file}")
    manifest = versions.read_manifest(bucket, "shelf_audit")
    assert manifest["signing"]["public_key_fingerprint"] == signing.fingerprint(signer.public_key_raw)
    assert "signed, key sha256:" in pushed.get_string_custom_property("pushed_reason")
    result = verify.verify_version(bucket, "shelf_audit", run_models=False, public_key=signer.public_key_raw)
    assert result.ok and result.signature.startswith("signature ok (pinned key")
    assert str(key_file) not in json.dumps(manifest)  # not even the key's path


def test_a_bad_key_source_fails_before_converting_and_publishes_nothing(artifacts, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(signing.ENV_OVERRIDE, "env:SHELF_AUDIT_TEST_NO_SUCH_VARIABLE")  # overrides the property
    bucket = str(tmp_path / "bucket")
    with mock.patch.object(build, "convert_many") as convert, pytest.raises(signing.SigningError, match="is not set"):
        _run(artifacts, bucket, name="badkey", **FAST)
    convert.assert_not_called()
    assert not (tmp_path / "bucket").exists() or versions.list_versions(bucket, "shelf_audit") == []


class Killed(BaseException):
    """A kill: no ``except Exception`` cleanup runs."""


def test_a_rerun_finishes_a_publish_killed_after_its_manifest(artifacts, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv(signing.ENV_OVERRIDE, raising=False)
    bucket = str(tmp_path / "bucket")

    def kill(step: str) -> None:
        if step == "manifest":
            raise Killed(step)

    with mock.patch.object(publish, "_step", side_effect=kill), pytest.raises(Killed):
        _run(artifacts, bucket, name="killed", **FAST)
    [version] = versions.list_versions(bucket, "shelf_audit")
    assert versions.read_latest(bucket, "shelf_audit") is None and history.read_history(bucket, "shelf_audit") == []
    with mock.patch.object(build, "convert_many") as convert:
        pushed = _run(artifacts, bucket, name="rerun", **FAST)
    convert.assert_not_called()
    assert_pushed(pushed)
    assert pushed.get_string_custom_property("pushed_reason").startswith("finished the interrupted publish")
    assert versions.read_latest(bucket, "shelf_audit") == version
    assert [(e["action"], e["version"], e.get("repaired")) for e in history.read_history(bucket, "shelf_audit")] == [
        ("publish", version, True)
    ]


def test_the_dag_passes_the_key_source_not_the_key(tmp_path):
    import dataclasses

    from pipeline import config as config_lib
    from pipeline.pipeline import create_pipeline, run_inputs

    config = config_lib.load("configs/demo.toml")
    config = config.replace(push=dataclasses.replace(config.push, signing_key="env:RELEASE_KEY"))
    dag = create_pipeline(config, str(tmp_path / "root"), run_inputs(config, str(tmp_path / "data"), "ram://b"))
    pusher = next(c for c in dag.components if c.id == "TFLitePusher")
    assert pusher.exec_properties[push_settings.SIGNING_KEY_KEY] == "env:RELEASE_KEY"
    unsigned = config.replace(push=dataclasses.replace(config.push, signing_key=""))
    dag = create_pipeline(unsigned, str(tmp_path / "root"), run_inputs(unsigned, str(tmp_path / "data"), "ram://b"))
    pusher = next(c for c in dag.components if c.id == "TFLitePusher")
    assert pusher.exec_properties[push_settings.SIGNING_KEY_KEY] is None
