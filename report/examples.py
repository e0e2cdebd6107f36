"""What the report reads from the run's photos: counts per split/class/device/lighting, and the misclassified gallery.

Both read ExampleGen's output (the raw photos in the data contract), so the
gallery shows the photo as it was captured, with its lane, device and lighting,
and the probabilities come from the candidate SavedModel's ``serving_default``
signature (serialized tf.Example -> probabilities), the same one TFMA feeds.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from shelf_data.contract import DEVICE_KEY, IMAGE_KEY, LABEL_KEY, LABELS, LANE_KEY, LIGHTING_KEY

THUMBNAIL_SIDE = 112


@dataclasses.dataclass(frozen=True)
class Photo:
    """One eval photo the candidate got wrong."""

    thumbnail: bytes  # JPEG
    true_label: str
    predicted: str
    probability: float  # of the predicted class
    true_probability: float
    lane_id: str
    device_id: str
    lighting: str
    record: str  # "<file name>#<index>" within the split


def split_files(examples_uri: str, split: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact (``Split-<split>/*``)."""
    import tensorflow as tf

    folder = os.path.join(examples_uri, f"Split-{split}")
    return sorted(f for f in tf.io.gfile.glob(os.path.join(folder, "*")) if not tf.io.gfile.isdir(f))


def records(files: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
    import tensorflow as tf

    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        for index, record in enumerate(tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()):
            yield os.path.basename(path), index, bytes(record)


def _feature(example: Any, key: str) -> str:
    if key not in example.features.feature:
        return ""
    feature = example.features.feature[key]
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if not values:
        return ""
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _label_name(value: str) -> str:
    try:
        index = int(value)
    except ValueError:
        return value or "?"
    return LABELS[index] if 0 <= index < len(LABELS) else value


# The small features counted (the photos themselves are not parsed); a missing one reads as default.
_COUNTED = {LABEL_KEY: -1, DEVICE_KEY: b"", LIGHTING_KEY: b"", LANE_KEY: -1}


def _count_batches(files: Sequence[str]) -> Iterator[dict[str, list[str]]]:
    """Batches of ``{feature: [first value as text, "" when missing]}`` for the counted features."""
    import tensorflow as tf

    spec = {key: tf.io.VarLenFeature(tf.int64 if isinstance(d, int) else tf.string) for key, d in _COUNTED.items()}

    def first_values(records: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(records, spec)
        out = {}
        for key, default in _COUNTED.items():
            fill = tf.constant(default, dtype=spec[key].dtype)
            dense = tf.sparse.to_dense(parsed[key], default_value=fill)
            # One column of the default after the values: column 0 is the first value, or the default.
            padded = tf.concat([dense, tf.fill([tf.shape(records)[0], 1], fill)], axis=1)
            out[key] = padded[:, 0]
        return out

    for compression in ("GZIP", ""):
        chosen = [f for f in files if f.endswith(".gz") == (compression == "GZIP")]
        if not chosen:
            continue
        dataset = tf.data.TFRecordDataset(chosen, compression_type=compression, num_parallel_reads=tf.data.AUTOTUNE)
        for batch in dataset.batch(1024).map(first_values).as_numpy_iterator():
            texts = {}
            for key, default in _COUNTED.items():
                values = batch[key].tolist()
                if isinstance(default, int):
                    texts[key] = ["" if v == default else str(v) for v in values]
                else:
                    texts[key] = [v.decode("utf-8", "replace") for v in values]
            yield texts


def count_examples(examples_uri: str, splits: Iterable[str] = ("train", "validation", "eval")) -> dict[str, Any]:
    """Photos per split, and per class, device, lighting and lane (all splits together).

    Returns ``{"splits": {split: {class: n}}, "device_id": {device: {class: n}}, "lighting": {...},
    "lane_id": {...}, "total": N}``; splits with no files are left out. Only the small features are
    parsed, in batches (the photos are skipped), so this stays a few seconds at 54,000 photos.
    """
    by_split: dict[str, collections.Counter] = {}
    groups: dict[str, dict[str, collections.Counter]] = {DEVICE_KEY: {}, LIGHTING_KEY: {}, LANE_KEY: {}}
    total = 0
    for split in splits:
        files = split_files(examples_uri, split)
        if not files:
            continue
        counter = by_split.setdefault(split, collections.Counter())
        for batch in _count_batches(files):
            for i, raw_label in enumerate(batch[LABEL_KEY]):
                label = _label_name(raw_label)
                counter[label] += 1
                total += 1
                for key, group in groups.items():
                    group.setdefault(batch[key][i] or "(missing)", collections.Counter())[label] += 1
    result: dict[str, Any] = {"splits": {s: dict(c) for s, c in by_split.items()}, "total": total}
    for key, group in groups.items():
        result[key] = {k: dict(v) for k, v in sorted(group.items(), key=lambda kv: _natural(kv[0]))}
    return result


def _natural(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _thumbnail(encoded: bytes, side: int = THUMBNAIL_SIDE) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(encoded))
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def serving_model_dir(model_uri: str) -> str:
    """The SavedModel folder of a Trainer ``model`` artifact (``<uri>/Format-Serving``), or ``model_uri`` itself."""
    import tensorflow as tf

    serving = os.path.join(model_uri, "Format-Serving")
    return serving if tf.io.gfile.isdir(serving) else model_uri


def misclassified(
    model_uri: str,
    examples_uri: str,
    limit: int = 24,
    prefer: Sequence[tuple[str, str]] = (),
    split: str = "eval",
    batch_size: int = 64,
    loaded: Any = None,
) -> tuple[list[Photo], int, int]:
    """Photos of ``split`` the candidate classifies wrongly, at most ``limit``.

    Photos in the ``prefer`` slices (``(feature, value)``, the worst first) come first,
    then the most confident mistakes. Returns ``(photos, wrong, read)``. ``loaded``:
    the SavedModel of ``model_uri`` when the caller has already loaded it.

    Raises:
        FileNotFoundError: the split has no files (the message names the folder).
    """
    import tensorflow as tf

    from shelf_model import features

    files = split_files(examples_uri, split)
    if not files:
        raise FileNotFoundError(f"no {split} split in {examples_uri} (no Split-{split}/ files)")
    if loaded is None:
        loaded = tf.saved_model.load(serving_model_dir(model_uri))
    serve = loaded.signatures[features.SERVING_SIGNATURE]
    wrong: list[tuple[tuple[int, float], dict[str, Any]]] = []
    read = 0
    batch: list[tuple[str, int, bytes]] = []

    def flush() -> None:
        if not batch:
            return
        probabilities = serve(examples=tf.constant([r for _, _, r in batch]))[features.PROBABILITIES].numpy()
        for (name, index, record), probs in zip(batch, probabilities, strict=True):
            example = tf.train.Example.FromString(record)
            label = _feature(example, LABEL_KEY)
            try:
                true_id = int(label)
            except ValueError:
                continue
            predicted = int(np.argmax(probs))
            if predicted == true_id:
                continue
            info = {
                "record": f"{name}#{index}",
                "label": true_id,
                "predicted": predicted,
                "probability": float(probs[predicted]),
                "true_probability": float(probs[true_id]) if 0 <= true_id < len(probs) else float("nan"),
                LANE_KEY: _feature(example, LANE_KEY),
                DEVICE_KEY: _feature(example, DEVICE_KEY),
                LIGHTING_KEY: _feature(example, LIGHTING_KEY),
                "image": _feature_bytes(example, IMAGE_KEY),
            }
            rank = len(prefer)
            for position, (feature, value) in enumerate(prefer):
                actual = LABELS[true_id] if feature == LABEL_KEY and 0 <= true_id < len(LABELS) else info.get(feature)
                if str(actual) == str(value):
                    rank = position
                    break
            wrong.append(((rank, -info["probability"]), info))
        batch.clear()

    for item in records(files):
        batch.append(item)
        read += 1
        if len(batch) >= batch_size:
            flush()
    flush()
    wrong.sort(key=lambda pair: pair[0])
    photos = []
    for _, info in wrong[:limit]:
        try:
            thumbnail = _thumbnail(info["image"])
        except Exception:  # noqa: BLE001 - an undecodable photo shows without a thumbnail
            thumbnail = b""
        photos.append(
            Photo(
                thumbnail=thumbnail,
                true_label=_label_name(str(info["label"])),
                predicted=_label_name(str(info["predicted"])),
                probability=info["probability"],
                true_probability=info["true_probability"],
                lane_id=info[LANE_KEY],
                device_id=info[DEVICE_KEY],
                lighting=info[LIGHTING_KEY],
                record=info["record"],
            )
        )
    return photos, len(wrong), read


def _feature_bytes(example: Any, key: str) -> bytes:
    if key not in example.features.feature:
        return b""
    values = example.features.feature[key].bytes_list.value
    return bytes(values[0]) if values else b""


def read_anomalies(anomalies_uri: str) -> dict[str, list[str]]:
    """ExampleValidator's anomalies per split: ``{split: ["feature: short description (description)", ...]}``."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, list[str]] = {}
    for folder in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "Split-*"))):
        split = os.path.basename(folder)[len("Split-") :]
        lines: list[str] = []
        for name in ("SchemaDiff.pb", "anomalies.pbtxt"):
            path = os.path.join(folder, name)
            if not tf.io.gfile.exists(path):
                continue
            anomalies = anomalies_pb2.Anomalies()
            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
            if name.endswith(".pb"):
                anomalies.ParseFromString(data)
            else:
                from google.protobuf import text_format

                text_format.Parse(data.decode("utf-8"), anomalies)
            for feature, info in sorted(anomalies.anomaly_info.items()):
                lines.append(f"{feature}: {info.short_description} ({info.description})")
            if anomalies.HasField("dataset_anomaly_info"):
                info = anomalies.dataset_anomaly_info
                lines.append(f"(dataset): {info.short_description} ({info.description})")
            break
        found[split] = lines
    return found
