"""Pusher step 3: assemble the release: files, golden samples, camera goldens, manifest, lineage.

Everything here is built in memory from what the earlier steps measured; only
:func:`bucket.publish.publish` writes, atomically. A version holds ``model.tflite``, every
``model_<variant>.tflite`` that passed, ``labels.txt``, ``golden/`` (raw-pixel samples),
``golden/camera/`` with ``golden/camera.json`` (original photos for the app's own preprocessing) and
``manifest.json``.

See docs/bucket-contract.md#layout for every file and manifest block.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils

from bucket import layout, publish
from components.tflite_pusher.verification import EvalData, Verified
from report import examples as report_examples
from report import split_stats
from shelf_data import bad_records, contract, drift_report, splits
from shelf_model import preprocessing
from shelf_tflite import convert, runtime
from shelf_tflite.verify import VerifyConfig

log = logging.getLogger(__name__)

CAMERA_DIR, CAMERA_INDEX = layout.GOLDEN_CAMERA_DIR, layout.GOLDEN_CAMERA_INDEX  # under golden/
# Replay tolerance on probabilities for a model file of each variant (same inputs, another interpreter build).
INT8_TOLERANCE, FLOAT_TOLERANCE = 0.02, 1e-3


def saved_model_fingerprint(model_dir: str) -> str:
    """sha256 over every file of the SavedModel (relative path + content).

    The identity used for deduplication: a re-run that hands the same
    trained model to the Pusher again gets the same fingerprint, whatever
    the converter does.
    """
    digest = hashlib.sha256()
    root = model_dir.rstrip("/")
    paths = []
    for folder, _, names in tf.io.gfile.walk(root):
        paths.extend(os.path.join(folder, name) for name in names)
    for path in sorted(paths):
        digest.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
        with tf.io.gfile.GFile(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


# -- lineage -------------------------------------------------------------------


def _int_property(artifact: types.Artifact, name: str) -> int | None:
    if artifact.has_property(name):
        return int(getattr(artifact, name))
    if artifact.has_custom_property(name):
        return int(artifact.get_int_custom_property(name))
    return None


def _spans_of(artifact: types.Artifact, span: int | None) -> list[int]:
    # A window of spans records every span read in the "spans" custom property ("3,4"); TFX's "span" is the newest.
    if artifact.has_custom_property("spans"):
        return sorted(int(s) for s in artifact.get_string_custom_property("spans").split(",") if s.strip())
    return [] if span is None else [span]


def examples_lineage(examples: list[types.Artifact]) -> list[dict[str, Any]]:
    """One entry per ExampleGen artifact, by span: ML Metadata id, span(s), version, input fingerprint, uri."""
    entries = []
    for artifact in examples:
        span = _int_property(artifact, "span")
        entries.append(
            {
                "artifact_id": artifact.id or None,
                "span": span,
                "spans": _spans_of(artifact, span),
                "version": _int_property(artifact, "version"),
                "input_fingerprint": artifact.get_string_custom_property("input_fingerprint") or None,
                "uri": artifact.uri,
            }
        )
    return sorted(entries, key=lambda e: (e["span"] is None, e["span"] or 0, e["artifact_id"] or 0))


def build_lineage(
    input_dict: Mapping[str, list[types.Artifact]],
    *,
    id_keys: Sequence[str],
    examples_key: str,
    pipeline_name: str | None,
    pipeline_run_id: str | None,
    pipeline_node: str | None,
    source_revision: str,
    inputs_digest: str,
    savedmodel_fingerprint: str,
) -> dict[str, Any]:
    """The manifest's ``lineage`` block for the pusher's inputs.

    ``mlmd`` holds ``<input>_artifact_id`` and ``<input>_uri`` for each of
    ``id_keys`` (model, blessing, transformed examples, evaluation) and
    ``examples_artifact_ids``; ``examples`` and ``spans`` come from the
    ExampleGen artifacts under ``examples_key`` (empty without that input).
    """
    ids: dict[str, Any] = {}
    for key in id_keys:
        for artifact in input_dict.get(key) or []:
            ids[f"{key}_artifact_id"] = artifact.id or None
            ids[f"{key}_uri"] = artifact.uri
    examples = examples_lineage(list(input_dict.get(examples_key) or []))
    ids["examples_artifact_ids"] = [e["artifact_id"] for e in examples]
    return {
        "pipeline_name": pipeline_name or None,
        "pipeline_run_id": pipeline_run_id or None,
        "pipeline_node": pipeline_node or None,
        "mlmd": ids,
        "spans": sorted({span for e in examples for span in e["spans"]}),
        "examples": examples,
        "source_revision": source_revision or None,
        "inputs_digest": inputs_digest or None,
        "savedmodel_fingerprint": savedmodel_fingerprint,
    }


# -- what the other components measured (best effort: a missing report never blocks a push) ------


def best_effort(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, or None when it raised (logged as a warning with the call)."""
    try:
        return func(*args)
    except Exception as error:  # noqa: BLE001 - reading another component's output is best effort
        log.warning("TFLitePusher: %s(%s) failed: %s", getattr(func, "__name__", func), args, error)
        return None


def drift_block(drift: Sequence[types.Artifact] | None) -> dict[str, Any] | None:
    """SpanDrift's report (None without the input, or when it cannot be read: logged)."""
    return best_effort(drift_report.read_report, artifact_utils.get_single_uri(list(drift))) if drift else None


def data_quality_block(examples: Sequence[types.Artifact] | None) -> dict[str, Any] | None:
    """Photos ExampleGen dropped (shelf_data/bad_records.py): counts, reasons, the first 100 (None if unknown)."""
    for artifact in examples or []:
        report = best_effort(bad_records.read_bad_records, artifact.uri)
        if report is not None:
            return bad_records.manifest_entry(report)
    return None


def splits_block(split_settings: str, statistics: Sequence[types.Artifact] | None) -> dict[str, Any] | None:
    """Split ratios, grouping and seed, with counts per split and class from StatisticsGen (None if unknown)."""
    if not split_settings:
        return None
    settings = json.loads(split_settings)
    counts = (
        best_effort(
            split_stats.read_split_counts, artifact_utils.get_single_uri(list(statistics)), list(settings["buckets"])
        )
        if statistics
        else None
    )
    return split_stats.split_record(settings["buckets"], settings["partition_feature"], settings["seed"], counts or {})


# -- files ------------------------------------------------------------------------


def variant_file_name(variant: str) -> str:
    return f"model_{variant}.tflite"


def variant_of(file_name: str, default_variant: str) -> str:
    """The variant a model file of the version holds (``model.tflite`` is the default variant)."""
    if file_name == layout.MODEL_FILE:
        return default_variant
    return file_name[len("model_") : -len(".tflite")]


def model_files(
    verified: Verified,
    default_variant: str,
    live: Mapping[str, Mapping[str, Any]] | None = None,
    labels: Sequence[str] = contract.LABELS,
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """The version's model files and the manifest's ``variants`` entries.

    A variant is published when it passed verification and the comparison with
    the live model (``live``: variant -> that comparison's record, whose
    ``passed`` is False only when it was compared and failed); a rejected
    variant is recorded with its reasons, not shipped.
    """
    files: dict[str, bytes] = {layout.MODEL_FILE: verified.blobs[default_variant]}
    entries: dict[str, dict[str, Any]] = {}
    for variant, report in verified.reports.items():
        entry = report.to_dict()
        comparison = (live or {}).get(variant)
        passed = report.passed
        if comparison is not None:
            entry["live_comparison"] = dict(comparison)
            if comparison.get("passed") is False:
                passed = False
                entry["reasons"] = list(entry.get("reasons") or []) + [
                    "vs live: " + r for r in comparison.get("reasons") or []
                ]
        if variant == "tasks":
            entry["tflite_metadata"] = best_effort(_tasks_metadata, verified.blobs[variant])
        name = variant_file_name(variant)
        entry["file"] = name if passed else None
        entry["published"] = passed
        entries[variant] = entry
        if passed:
            files[name] = verified.blobs[variant]
        else:
            log.warning("variant %s not published: %s", variant, "; ".join(entry.get("reasons") or []))
    files[layout.LABELS_FILE] = ("\n".join(labels) + "\n").encode("utf-8")
    return files, entries


def _tasks_metadata(model_bytes: bytes) -> dict[str, Any]:
    from shelf_tflite import metadata as tflite_metadata

    return tflite_metadata.read_metadata(model_bytes)


def _model_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name.endswith(".tflite")}


def _tolerances(files: Mapping[str, bytes], default_variant: str) -> dict[str, float]:
    return {
        name: (INT8_TOLERANCE if variant_of(name, default_variant) == "int8" else FLOAT_TOLERANCE)
        for name in _model_files(files)
    }


def golden_files(files: Mapping[str, bytes], data: EvalData, default_variant: str) -> dict[str, bytes]:
    """``golden/``: the golden eval images as raw pixels, each model file's outputs on them."""
    models = _model_files(files)
    expected = {name: runtime.run_tflite(blob, data.golden_images) for name, blob in models.items()}
    return publish.build_golden(
        data.golden_images,
        data.golden_labels,
        data.golden_reference,
        expected,
        _tolerances(files, default_variant),
        contract.LABELS,
    )


def _channels(encoded: bytes) -> int | None:
    """Colour channels of a JPEG (None: not a JPEG)."""
    if not encoded.startswith(b"\xff\xd8"):
        return None
    return int(tf.io.extract_jpeg_shape(encoded)[-1].numpy())


def pick_camera_frames(examples_uri: str, per_class: int, split: str = splits.EVAL) -> list[tuple[str, int, bytes]]:
    """Up to ``per_class`` original RGB JPEGs of each class from a raw (ExampleGen) split, in file order.

    Returns ``(record, label, jpeg bytes)`` with ``record`` = ``<file>#<index>``.
    """
    files = report_examples.split_files(examples_uri, split)
    chosen: dict[int, list[tuple[str, int, bytes]]] = {i: [] for i in range(len(contract.LABELS))}
    for name, index, record in report_examples.records(files):
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        labels = feature[contract.LABEL_KEY].int64_list.value if contract.LABEL_KEY in feature else []
        images = feature[contract.IMAGE_KEY].bytes_list.value if contract.IMAGE_KEY in feature else []
        if not labels or not images or labels[0] not in chosen or len(chosen[labels[0]]) >= per_class:
            continue
        if _channels(images[0]) == 3:
            chosen[labels[0]].append((f"{name}#{index}", int(labels[0]), bytes(images[0])))
        if all(len(c) >= per_class for c in chosen.values()):
            break
    return [frame for label in sorted(chosen) for frame in chosen[label]]


def camera_goldens(
    examples: Sequence[types.Artifact] | None,
    per_class: int,
    model: str | Any,
    files: Mapping[str, bytes],
    default_variant: str,
) -> dict[str, bytes]:
    """Camera goldens from ExampleGen's newest ``examples`` artifact ({} without it or with ``per_class`` 0)."""
    if not examples or per_class <= 0:
        return {}
    frames = pick_camera_frames(examples[-1].uri, per_class)
    image_size = runtime.input_image_shape(files[layout.MODEL_FILE])[0]
    return camera_golden_files(frames, model, files, default_variant, image_size)


def camera_golden_files(
    frames: Sequence[tuple[str, int, bytes]],
    model: str | Any,
    files: Mapping[str, bytes],
    default_variant: str,
    image_size: int,
) -> dict[str, bytes]:
    """``golden/camera/frame_XXX.jpg`` and ``golden/camera.json``: whole camera frames and what each model gives.

    Each model file is fed the frame prepared by the preprocessing contract for its
    input (gray for the gray variants, RGB for the Tasks variant); ``savedmodel`` is
    the trained model on Transform's own preprocessing of the same bytes (``model``:
    the SavedModel folder, or the model already loaded from it).
    """
    if not frames:
        return {}
    models = _model_files(files)
    inputs = {
        channels: np.stack(
            [preprocessing.camera_frame_input(jpeg, channels, image_size).numpy() for _, _, jpeg in frames]
        )
        for channels in (1, 3)
    }
    reference = convert.saved_model_predict(model, inputs[1])
    inputs_of = {name: runtime.input_image_shape(blob)[-1] for name, blob in models.items()}
    expected = {name: runtime.run_tflite(blob, inputs[inputs_of[name]]) for name, blob in models.items()}
    out: dict[str, bytes] = {}
    samples = []
    for i, (record, label, jpeg) in enumerate(frames):
        name = f"{CAMERA_DIR}/frame_{i:03d}.jpg"
        out[name] = jpeg
        height, width, channels = (int(d) for d in tf.io.extract_jpeg_shape(jpeg).numpy())
        samples.append(
            {
                "file": name,
                "record": record,
                "label": label,
                "label_name": contract.LABELS[label],
                "size": [width, height],
                "channels": channels,
                "savedmodel": [round(float(v), 7) for v in reference[i]],
                "expected": {f: [round(float(v), 7) for v in out_[i]] for f, out_ in expected.items()},
            }
        )
    out[CAMERA_INDEX] = json.dumps(
        {
            "what": "original eval photos; decode and preprocess them as the app does, run a model file, "
            "compare with expected[<file>] (the model's outputs after the manifest's preprocessing contract)",
            "preprocessing": preprocessing.preprocessing_contract(image_size),
            "inputs": {name: "rgb" if inputs_of[name] == 3 else "gray" for name in models},
            "labels": list(contract.LABELS),
            "samples": samples,
            "tolerance": _tolerances(files, default_variant),
        },
        indent=2,
        sort_keys=True,
    ).encode("utf-8")
    log.info("TFLitePusher: %d camera goldens (original RGB JPEGs from the eval split)", len(frames))
    return out


# -- the manifest -----------------------------------------------------------------


def verification_block(config: VerifyConfig, data: EvalData) -> dict[str, Any]:
    """The checks every variant went through, with their budgets and the data they ran on."""
    return {
        "size_budget_bytes": config.size_budget_bytes,
        "latency_budget_ms": config.latency_budget_ms,
        "damaged_recall_tolerance": config.damaged_recall_tolerance,
        "parity_tolerances": dict(config.parity_tolerances),
        "latency": "median of batch-1 invocations, 1 thread, host CPU",
        "eval_examples": int(len(data.images)),
        "calibration_examples": int(len(data.representative)),
    }


def manifest(
    *,
    model_name: str,
    default_variant: str,
    variants: Mapping[str, Mapping[str, Any]],
    gate_metrics: Mapping[str, Any],
    lineage: Mapping[str, Any],
    image_shape: Sequence[int],
    verification: Mapping[str, Any],
    live_gate: Mapping[str, Any],
    drift: Mapping[str, Any] | None,
    splits: Mapping[str, Any] | None,
    data_quality: Mapping[str, Any] | None,
    labels: Sequence[str] = contract.LABELS,
) -> dict[str, Any]:
    """The version's ``manifest.json`` before publishing (:func:`bucket.publish.publish` adds the rest).

    Beside :func:`bucket.publish.build_manifest`'s fields: the preprocessing contract
    (for the default variant's image size), the verification settings, the comparison with the
    live model, SpanDrift's report, the splits and the photos ExampleGen dropped.
    """
    return publish.build_manifest(
        model_name=model_name,
        default_variant=default_variant,
        variants=variants,
        labels=labels,
        gate_metrics=gate_metrics,
        lineage=lineage,
        image_shape=image_shape,
        extra={
            "preprocessing": preprocessing.preprocessing_contract(int(image_shape[0])),
            "verification": dict(verification),
            "live_gate": dict(live_gate),
            "drift": drift,
            "splits": splits,
            "data_quality": data_quality,
        },
    )
