"""Signed releases: Ed25519 signatures of a version's ``manifest.json`` (``cryptography``).

The manifest lists every file's sha256, so the detached signature of its exact bytes
(``versions/<v>/manifest.sig``, 64 raw bytes) covers the whole version; the manifest's ``signing`` block
names the algorithm and carries the public key and its fingerprint. Keys come from ``[push] signing_key``
or ``SHELF_AUDIT_SIGNING_KEY`` (``file:``, ``env:`` or ``gcpkms://``); only the source's name is logged or
recorded, never the key. The embedded key proves integrity; only a key pinned by the verifier proves origin.

See docs/bucket-contract.md#signed-releases for the manifest block, the key sources and the app's check.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any, Protocol

ALGORITHM = "ed25519"
ENV_OVERRIDE = "SHELF_AUDIT_SIGNING_KEY"
SIGNATURE_FILE = "manifest.sig"


class SigningError(RuntimeError):
    """A signing key cannot be loaded or used (the message names the source, never the key)."""


class Signer(Protocol):
    """Signs manifest bytes; knows its public key."""

    source: str

    @property
    def public_key_raw(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""

    def manifest_block(self) -> dict[str, Any]:
        """The manifest's ``signing`` block."""


def fingerprint(public_key_raw: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    return "sha256:" + hashlib.sha256(public_key_raw).hexdigest()


def _block(public_key_raw: bytes) -> dict[str, Any]:
    return {
        "algorithm": ALGORITHM,
        "public_key_fingerprint": fingerprint(public_key_raw),
        "public_key": base64.b64encode(public_key_raw).decode("ascii"),
        "signature_file": SIGNATURE_FILE,
    }


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclasses.dataclass
class LocalSigner:
    """An Ed25519 private key held in memory (loaded from a file or an environment variable)."""

    source: str
    _key: Any = dataclasses.field(repr=False)

    @property
    def public_key_raw(self) -> bytes:
        """The raw 32-byte public key."""
        return _raw_public(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of ``data``."""
        return self._key.sign(data)

    def manifest_block(self) -> dict[str, Any]:
        """The manifest's ``signing`` block."""
        return _block(self.public_key_raw)


@dataclasses.dataclass
class KmsSigner:
    """An Ed25519 key version in Google Cloud KMS (``EC_SIGN_ED25519``): the key never leaves KMS."""

    source: str
    public_key_raw: bytes
    _client: Any = dataclasses.field(repr=False)
    _name: str = ""

    def sign(self, data: bytes) -> bytes:
        """Ask KMS for the signature of ``data``."""
        try:
            return bytes(self._client.asymmetric_sign(request={"name": self._name, "data": data}).signature)
        except Exception as error:  # noqa: BLE001 - named, with the source
            raise SigningError(f"signing with {self.source} failed: {error}") from None

    def manifest_block(self) -> dict[str, Any]:
        """The manifest's ``signing`` block."""
        return _block(self.public_key_raw)


def _private_from_pem(pem: bytes, source: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except Exception as error:  # noqa: BLE001 - the library's message never contains the key
        raise SigningError(f"signing key from {source} is not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"signing key from {source} is not an Ed25519 key ({type(key).__name__})")
    return key


def resolve_source(configured: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The key source to use: ``$SHELF_AUDIT_SIGNING_KEY`` if set, else ``configured``; None: unsigned."""
    environ = os.environ if environ is None else environ
    return (environ.get(ENV_OVERRIDE) or "").strip() or (configured or "").strip() or None


def check_source(source: str) -> None:
    """Validate a key source's form (not the key): ``file:``, ``env:`` or ``gcpkms://``.

    Raises:
        ValueError: any other form (a PEM pasted into the config is refused, and not echoed).
    """
    if source.startswith("file:") and len(source) > len("file:"):
        return
    if source.startswith("env:") and len(source) > len("env:"):
        return
    if source.startswith("gcpkms://projects/") and "/cryptoKeyVersions/" in source:
        return
    shown = "<a PEM key: never put the key itself in a config>" if "PRIVATE KEY" in source else repr(source)
    raise ValueError(
        "signing_key must be file:/path/key.pem, env:VARIABLE or "
        f"gcpkms://projects/.../cryptoKeyVersions/N. Received {shown}"
    )


def load_signer(source: str, environ: Mapping[str, str] | None = None) -> Signer:
    """The signer a key source names (see the module docstring).

    Raises:
        SigningError: unreadable file, unset variable, not an Ed25519 key, KMS client missing or failing.
        ValueError: a source of an unknown form.
    """
    check_source(source)
    environ = os.environ if environ is None else environ
    if source.startswith("file:"):
        path = source[len("file:") :]
        try:
            with open(path, "rb") as f:
                pem = f.read()
        except OSError as error:
            raise SigningError(f"cannot read the signing key file {path}: {error.strerror or error}") from None
        return LocalSigner(source, _private_from_pem(pem, source))
    if source.startswith("env:"):
        variable = source[len("env:") :]
        value = environ.get(variable)
        if not value:
            raise SigningError(f"signing key variable {variable} is not set (signing_key = {source!r})")
        return LocalSigner(source, _private_from_pem(value.replace("\\n", "\n").encode("utf-8"), source))
    return _kms_signer(source)


def _kms_signer(source: str) -> KmsSigner:
    try:
        from google.cloud import kms
    except ImportError:
        raise SigningError(
            f"signing_key {source} needs the google-cloud-kms package, which is not installed "
            "(add it to the image, or sign with file: or env:)"
        ) from None
    from cryptography.hazmat.primitives import serialization

    name = source[len("gcpkms://") :]
    try:
        client = kms.KeyManagementServiceClient()
        pem = client.get_public_key(request={"name": name}).pem.encode("utf-8")
        public = serialization.load_pem_public_key(pem)
    except Exception as error:  # noqa: BLE001
        raise SigningError(f"cannot read the public key of {source}: {error}") from None
    return KmsSigner(source, _raw_public(public), client, name)


def generate_private_key_pem() -> tuple[bytes, bytes]:
    """A new Ed25519 key: ``(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_public_key(data: bytes) -> bytes:
    """Raw 32-byte Ed25519 public key from PEM, or from raw bytes.

    Raises:
        ValueError: neither.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if len(data) == 32:
        return data
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"not a PEM public key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key ({type(key).__name__})")
    return _raw_public(key)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the signature check found: ``problems`` fail verification, ``warnings`` do not."""

    summary: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _ed25519_ok(public_raw: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_manifest(
    manifest_bytes: bytes,
    signature: bytes | None,
    block: Mapping[str, Any] | None,
    pinned: bytes | None = None,
) -> Verdict:
    """Check ``manifest.sig`` against the exact manifest bytes.

    Args:
        manifest_bytes: ``manifest.json`` as stored.
        signature: ``manifest.sig`` as stored, or None when absent.
        block: the manifest's ``signing`` block (None: unsigned manifest).
        pinned: the trusted public key (raw or PEM); None: use the manifest's own key (integrity only).
    """
    pinned_raw = load_public_key(pinned) if pinned is not None else None
    manifest = "manifest.json"
    if block is None and signature is None:
        if pinned_raw is not None:
            return Verdict("unsigned", (f"{manifest}: unsigned, but a public key was given: expected a signature",))
        return Verdict("unsigned", (), ("unsigned: nothing proves who published this version",))
    if signature is None:
        return Verdict("signed", (f"{SIGNATURE_FILE}: missing, but {manifest} declares a signature",))
    if block is None:
        # A signature without a signing block: the block may have been removed from the manifest.
        if pinned_raw is None:
            return Verdict("signed", (f"{manifest}: has {SIGNATURE_FILE} but no signing block",))
        block = {}
    if block.get("algorithm", ALGORITHM) != ALGORITHM:
        return Verdict("signed", (f"{manifest}: unknown signing algorithm {block.get('algorithm')!r}",))
    if pinned_raw is not None:
        key, how = pinned_raw, f"pinned key {fingerprint(pinned_raw)}"
        declared = block.get("public_key_fingerprint")
        if declared and declared != fingerprint(pinned_raw):
            return Verdict(
                f"signed by {declared}",
                (f"{manifest}: signed by key {declared}, not the pinned key {fingerprint(pinned_raw)}",),
            )
    else:
        try:
            key = base64.b64decode(str(block.get("public_key", "")), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32 or fingerprint(key) != block.get("public_key_fingerprint"):
            return Verdict("signed", (f"{manifest}: its public key does not match its public_key_fingerprint",))
        how = f"key from the manifest {fingerprint(key)}"
    if not _ed25519_ok(key, signature, manifest_bytes):
        return Verdict(f"signed ({how})", (f"{manifest}: signature does not verify ({SIGNATURE_FILE}, {how})",))
    warnings = (
        ()
        if pinned_raw is not None
        else (
            "signature checked against the key the manifest carries: this proves integrity, not origin; "
            "pass --public-key to pin the release key",
        )
    )
    return Verdict(f"signature ok ({how})", (), warnings)
