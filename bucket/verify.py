"""Checking a published version: its signature, every file's checksum, and each model's golden replays.

:func:`verify_version` runs the models (``golden/`` inputs and the camera
goldens) with LiteRT's interpreter, imported only then.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bucket import history, storage, versions
from bucket.layout import (
    GOLDEN_CAMERA_INDEX,
    GOLDEN_DIR,
    GOLDEN_INDEX,
    HISTORY_DIR,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    check_name,
    join,
    version_dir,
)


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_version`; ``problems`` empty means ok.

    ``signature`` says what the signature check established ("unsigned",
    "signed ... (pinned key)" or "signed ... (key from the manifest: ...)");
    ``warnings`` are things worth saying that do not fail the check.
    """

    version: str
    checked: tuple[str, ...]
    problems: tuple[str, ...]
    signature: str = "not checked"
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def verify_version(
    bucket: str,
    model_name: str,
    version: str | None = None,
    run_models: bool = True,
    public_key: bytes | None = None,
) -> VerifyResult:
    """Check a version: its signature, every file's checksum, and each ``.tflite`` replays its golden samples.

    Args:
        bucket: the bucket.
        model_name: folder under the bucket.
        version: default: the one ``LATEST`` names.
        run_models: also load and run each model on ``golden/`` inputs and
            compare with the recorded outputs (tolerance from ``golden.json``;
            this alone imports TensorFlow Lite).
        public_key: the pinned Ed25519 public key (raw 32 bytes or PEM). With
            it, an unsigned version or one signed by another key fails.
            Without it, a signature is checked against the key the manifest
            carries, which proves integrity, not origin (a warning says so).

    Returns:
        A :class:`VerifyResult` naming each problem with its file.
    """
    from bucket import signing

    version, manifest_bytes = versions.read_manifest_bytes(bucket, model_name, version)
    folder = version_dir(bucket, model_name, version)
    problems: list[str] = []
    warnings: list[str] = []

    # The signature covers the manifest's exact bytes, so it goes first.
    sig_path = join(folder, SIGNATURE_FILE)
    sig = storage.read(sig_path) if storage.exists(sig_path) else None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        manifest = None
        problems.append(f"{MANIFEST_FILE}: not valid JSON ({error})")
    block = manifest.get("signing") if isinstance(manifest, dict) else None
    verdict = signing.verify_manifest(manifest_bytes, sig, block, public_key)
    problems.extend(verdict.problems)
    warnings.extend(verdict.warnings)
    if isinstance(manifest, dict) and manifest.get("version") != version:
        problems.append(f"{MANIFEST_FILE}: names version {manifest.get('version')!r}, folder is {version!r}")

    # A record of the manifest's sha256 at publish time (catches accidental changes of unsigned manifests).
    event = history.publish_event(history.read_history(bucket, model_name), version)
    recorded = event.get("manifest_sha256") if event else None
    if event is not None and recorded and recorded != storage.sha256(manifest_bytes):
        problems.append(
            f"{MANIFEST_FILE}: sha256 differs from the one recorded when it was published "
            f"({HISTORY_DIR}/{event.get('event', '?')})"
        )

    checked: list[str] = [MANIFEST_FILE]
    contents: dict[str, bytes] = {}
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name, entry in sorted(files.items()):
        try:
            check_name(name)
        except ValueError as error:
            problems.append(f"{name}: {error}")
            continue
        path = join(folder, name)
        checked.append(name)
        if not storage.exists(path):
            problems.append(f"{name}: missing")
            continue
        data = storage.read(path)
        contents[name] = data
        if len(data) != entry.get("bytes") or storage.sha256(data) != entry.get("sha256"):
            problems.append(f"{name}: checksum mismatch (expected sha256 {str(entry.get('sha256'))[:12]}...)")
    if run_models and not problems:
        problems.extend(_replay_golden(contents))
    return VerifyResult(version, tuple(checked), tuple(problems), verdict.summary, tuple(warnings))


def _replay_golden(contents: Mapping[str, bytes]) -> list[str]:
    # Imported here: only verification needs the interpreter and numpy.
    import numpy as np

    from shelf_tflite import runtime

    index_name = f"{GOLDEN_DIR}/{GOLDEN_INDEX}"
    models = sorted(name for name in contents if name.endswith(".tflite"))
    if index_name not in contents:
        return [f"{index_name}: missing; cannot run the models"] if models else []
    index = json.loads(contents[index_name].decode("utf-8"))
    shape = tuple(index["shape"])
    images = np.stack(
        [
            np.frombuffer(contents[f"{GOLDEN_DIR}/{s['file']}"], dtype=index["dtype"]).reshape(shape)
            for s in index["samples"]
        ]
    )
    problems = []
    for name in models:
        try:
            outputs = runtime.run_tflite(contents[name], images)
        except Exception as error:  # any load/run failure is a verdict, not a crash
            problems.append(f"{name}: does not load or run: {error}")
            continue
        problems += _differs(name, outputs, index["samples"], index["tolerance"], "golden outputs")
    return problems + _replay_camera(contents, models)


def _differs(
    name: str, outputs: Any, samples: Sequence[Mapping[str, Any]], tolerances: Mapping[str, float], what: str
) -> list[str]:
    """``[problem]`` when a model's outputs stray from the samples' ``expected[name]`` beyond its tolerance, else []."""
    import numpy as np

    expected = np.array([s["expected"][name] for s in samples], dtype=np.float32)
    tolerance = float(tolerances.get(name, tolerances.get("default", 1e-3)))
    diff = float(np.max(np.abs(outputs - expected))) if len(expected) else 0.0
    return [] if diff <= tolerance else [f"{name}: {what} differ by {diff:.3g} > {tolerance:g}"]


def _replay_camera(contents: Mapping[str, bytes], models: Sequence[str]) -> list[str]:
    """Each model on the camera goldens, preprocessed by the contract for its input (gray or RGB)."""
    import numpy as np

    from shelf_model import preprocessing
    from shelf_tflite import runtime

    index_name = f"{GOLDEN_DIR}/{GOLDEN_CAMERA_INDEX}"
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    if index_name not in contents:
        return []  # versions published before camera goldens existed
    index = json.loads(contents[index_name].decode("utf-8"))
    problems = []
    for name in models:
        samples = [s for s in index["samples"] if name in s["expected"]]
        if not samples:
            continue
        try:
            height, _, channels = runtime.input_image_shape(contents[name])
            images = np.stack(
                [
                    preprocessing.camera_frame_input(contents[f"{GOLDEN_DIR}/{s['file']}"], channels, height).numpy()
                    for s in samples
                ]
            )
            outputs = runtime.run_tflite(contents[name], images)
        except Exception as error:  # a verdict, not a crash
            problems.append(f"{name}: does not run on the camera goldens: {error}")
            continue
        problems += _differs(name, outputs, samples, index["tolerance"], "camera golden outputs")
    return problems
