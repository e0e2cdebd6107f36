"""Signed releases: Ed25519 over manifest.json, checked by ``models verify`` and independently by ``openssl``."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bucket import publish, signing
from pipeline import config as config_lib
from shelf_audit import cli

pytestmark = pytest.mark.component

MODEL = "shelf_audit"
OPENSSL = shutil.which("openssl")


@pytest.fixture
def keys(tmp_path, capsys) -> tuple[Path, Path]:
    """``(private.pem, public.pem)`` written by ``shelf-audit models keygen``."""
    private = tmp_path / "keys" / "release.pem"
    private.parent.mkdir()
    assert cli.main(["models", "keygen", "--out", str(private)]) == 0
    out = capsys.readouterr().out
    assert "PRIVATE" not in out and private.read_bytes().decode() not in out
    assert "BEGIN PUBLIC KEY" in out and "fingerprint sha256:" in out
    return private, Path(f"{private}.pub")


def _publish(bucket: str, signer, tag: str = "m") -> publish.PublishResult:
    manifest = publish.build_manifest(
        model_name=MODEL,
        default_variant="fp16",
        variants={"fp16": {"file": "model.tflite"}},
        labels=["ok", "misplaced", "damaged"],
        gate_metrics={"overall": {"weighted_recall": 0.95}},
        lineage={},
        image_shape=(8, 8, 1),
    )
    files = {"model.tflite": f"tflite bytes {tag}".encode(), "labels.txt": b"ok\nmisplaced\ndamaged\n"}
    return publish.publish(bucket, MODEL, files, manifest, signer=signer, extra_files={"report.html": b"<html></html>"})


def _verify(bucket: str, *extra: str) -> int:
    return cli.main(["models", "verify", "--no-run", "--bucket", bucket, *extra])


def _raw_public_via_openssl(public_pem: Path) -> bytes:
    der = subprocess.run(
        [OPENSSL, "pkey", "-pubin", "-in", str(public_pem), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    return der[-32:]  # SubjectPublicKeyInfo of Ed25519: a 12-byte header, then the raw key


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys, capsys):
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert cli.main(["models", "keygen", "--out", str(private)]) == 1  # never overwritten
    assert "exists" in capsys.readouterr().err


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line tool")
def test_a_signed_release_verifies_with_openssl_and_models_verify(tmp_path, keys, capsys, caplog):
    private, public = keys
    bucket = str(tmp_path / "bucket")
    caplog.set_level(logging.DEBUG)
    result = _publish(bucket, signing.load_signer(f"file:{private}"))
    assert "signed, key sha256:" in result.message
    folder = Path(result.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    # The fingerprint is sha256 of the raw public key, as openssl extracts it (independent of cryptography).
    raw = _raw_public_via_openssl(public)
    assert manifest["signing"]["public_key_fingerprint"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert base64.b64decode(manifest["signing"]["public_key"]) == raw
    assert manifest["files"]["report.html"]["sha256"] == hashlib.sha256(b"<html></html>").hexdigest()
    # Independent verification: openssl over the exact manifest bytes and the detached signature.
    cmd = [OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin"]
    cmd += ["-in", str(folder / "manifest.json"), "-sigfile", str(folder / "manifest.sig")]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    # Nothing secret in the manifest or the logs.
    secret = private.read_text()
    body = "".join(line for line in secret.splitlines() if "-----" not in line)
    assert body not in (folder / "manifest.json").read_text() and body not in caplog.text

    assert _verify(bucket, "--public-key", str(public)) == 0
    out = capsys.readouterr()
    assert "signature ok (pinned key sha256:" in out.out and "warning" not in out.err
    assert _verify(bucket) == 0  # the manifest's own key: integrity only, and it says so
    assert "proves integrity, not origin" in capsys.readouterr().err

    # One byte flipped in the manifest: openssl and models verify both fail, naming the manifest.
    data = bytearray((folder / "manifest.json").read_bytes())
    data[data.index(b"0.95") + 3] ^= 0x01  # 0.95 -> 0.94
    (folder / "manifest.json").write_bytes(bytes(data))
    assert subprocess.run(cmd, capture_output=True).returncode != 0
    assert _verify(bucket, "--public-key", str(public)) == 1
    assert "FAILED" in (err := capsys.readouterr().err) and "manifest.json: signature does not verify" in err
    assert _verify(bucket) == 1


def test_replacing_the_model_and_its_manifest_together_is_caught(tmp_path, keys, capsys):
    private, public = keys
    bucket = str(tmp_path / "bucket")
    folder = Path(_publish(bucket, signing.load_signer(f"file:{private}")).path)
    # The attacker writes the bucket but has no key: new model, manifest checksums updated to match.
    evil = b"evil model"
    (folder / "model.tflite").write_bytes(evil)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.tflite"] = {"bytes": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert _verify(bucket, "--public-key", str(public)) == 1
    assert "manifest.json: signature does not verify" in capsys.readouterr().err

    # ... and re-signs with a key of their own: only the pinned key tells.
    attacker = signing.LocalSigner("test", signing._private_from_pem(signing.generate_private_key_pem()[0], "test"))
    manifest["signing"] = attacker.manifest_block()
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(manifest_bytes)
    (folder / "manifest.sig").write_bytes(attacker.sign(manifest_bytes))
    assert _verify(bucket, "--public-key", str(public)) == 1
    assert "not the pinned key" in capsys.readouterr().err

    # ... or strips the signature altogether.
    del manifest["signing"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (folder / "manifest.sig").unlink()
    assert _verify(bucket, "--public-key", str(public)) == 1
    assert "unsigned, but a public key was given" in capsys.readouterr().err


def test_a_tampered_file_is_named(tmp_path, keys, capsys):
    private, public = keys
    bucket = str(tmp_path / "bucket")
    folder = Path(_publish(bucket, signing.load_signer(f"file:{private}")).path)
    (folder / "report.html").write_bytes(b"<html>changed</html>")
    assert _verify(bucket, "--public-key", str(public)) == 1
    assert "FAILED" in (err := capsys.readouterr().err) and "report.html: checksum mismatch" in err


def test_unsigned_releases_say_so(tmp_path, keys, capsys):
    bucket = str(tmp_path / "bucket")
    result = _publish(bucket, None)
    assert "unsigned" in result.message and not (Path(result.path) / "manifest.sig").exists()
    assert _verify(bucket) == 0
    captured = capsys.readouterr()
    assert "ok " in captured.out and "unsigned" in captured.out and "unsigned" in captured.err
    assert _verify(bucket, "--public-key", str(keys[1])) == 1


def test_key_sources(tmp_path, keys, monkeypatch):
    private, _ = keys
    pem = private.read_text()
    from_env = signing.load_signer("env:RELEASE_KEY", {"RELEASE_KEY": pem})
    assert from_env.public_key_raw == signing.load_signer(f"file:{private}").public_key_raw
    with pytest.raises(signing.SigningError, match="variable RELEASE_KEY is not set"):
        signing.load_signer("env:RELEASE_KEY", {})
    with pytest.raises(signing.SigningError, match=f"cannot read the signing key file {tmp_path}/none.pem"):
        signing.load_signer(f"file:{tmp_path}/none.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(signing.SigningError, match="is not an unencrypted PEM private key"):
        signing.load_signer(f"file:{tmp_path}/bad.pem")
    with pytest.raises(signing.SigningError, match="needs the google-cloud-kms package"):
        signing.load_signer("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1")
    with pytest.raises(ValueError) as raised:
        signing.load_signer(pem)  # the key pasted where its source belongs: refused, not echoed
    assert "never put the key itself" in str(raised.value) and pem.splitlines()[1] not in str(raised.value)
    # The environment variable overrides the config (scheduled runs).
    assert signing.resolve_source("file:/a.pem", {}) == "file:/a.pem"
    assert signing.resolve_source("file:/a.pem", {signing.ENV_OVERRIDE: "env:K"}) == "env:K"
    assert signing.resolve_source("", {}) is None


def test_config_signing_key(tmp_path, keys):
    private, _ = keys
    base = Path("configs/demo.toml").read_text()
    good = tmp_path / "good.toml"
    good.write_text(base.replace("[push]\n", f'[push]\nsigning_key = "file:{private}"\n', 1))
    assert config_lib.load(str(good)).push.signing_key == f"file:{private}"
    bad = tmp_path / "bad.toml"
    pem_line = private.read_text().splitlines()[1]
    bad.write_text(base.replace("[push]\n", f'[push]\nsigning_key = "-----BEGIN PRIVATE KEY-----{pem_line}"\n', 1))
    with pytest.raises(config_lib.ConfigError, match="push.signing_key must be") as raised:
        config_lib.load(str(bad))
    assert pem_line not in str(raised.value)
    assert os.environ.get(signing.ENV_OVERRIDE) is None  # the suite never depends on a real key
