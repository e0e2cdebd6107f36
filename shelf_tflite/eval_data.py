"""The Transform output examples that feed int8 calibration and verification.

:func:`load_images` reads one split (``pixels`` is a serialized uint8 tensor)
with its labels, :func:`sample_split` draws a uniform sample of a split in one
pass, and :func:`select_golden_indices` picks the golden samples.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shelf_data.contract import LABELS
from shelf_model import features

# The transformed-example keys are Transform's.
PIXELS_KEY = features.PIXELS_KEY
LABEL_KEY = features.LABEL_KEY


def select_golden_indices(labels: np.ndarray, count: int) -> list[int]:
    """Pick ``count`` eval examples, round-robin over the classes present.

    Golden samples should exercise every output, not only the majority class.
    """
    labels = np.asarray(labels).reshape(-1)
    pools = [list(np.flatnonzero(labels == c)) for c in range(len(LABELS))]
    chosen: list[int] = []
    while len(chosen) < min(count, len(labels)):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(int(pool.pop(0)))
    return sorted(chosen)


def _split_files(split_dir: str) -> list[str]:
    files = tf.io.gfile.glob(f"{split_dir.rstrip('/')}/*.gz")
    if not files:
        files = [f for f in tf.io.gfile.glob(f"{split_dir.rstrip('/')}/*") if not tf.io.gfile.isdir(f)]
    return sorted(files)


def load_images(split_dir: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read images and labels from one split of the Transform output examples.

    Args:
        split_dir: e.g. ``<examples.uri>/Split-eval`` (TFRecords, plain or GZIP ``*.gz``).
        limit: read at most this many examples (in file order).

    Returns:
        ``(images uint8 [N, 128, 128, 1], labels int64 [N])``.

    Raises:
        FileNotFoundError: no files in ``split_dir``.
    """
    files = _split_files(split_dir)
    if not files:
        raise FileNotFoundError(f"no TFRecord files in {split_dir}")
    spec = {
        PIXELS_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(files, compression_type=features.compression_type(files))
    if limit is not None:
        dataset = dataset.take(limit)

    def _decode(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        # The pixels are a serialized tensor that carries its own shape (the Trainer's image size).
        return tf.io.parse_tensor(parsed[PIXELS_KEY], out_type=tf.uint8), parsed[LABEL_KEY]

    images, labels = [], []
    for pixels, label in dataset.map(_decode).batch(256):
        images.append(pixels.numpy())
        labels.append(label.numpy())
    if not images:
        return np.zeros((0, 0, 0, 1), dtype=np.uint8), np.zeros((0,), dtype=np.int64)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def sample_split(split_dir: str, count: int, seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """A uniform random sample of ``count`` images from one split, read in one pass.

    Each record draws a random key and the ``count`` smallest keys win (bottom-k
    sampling, a reservoir sample in batches). Memory holds ``count`` serialized
    images plus one batch whatever the split's size (the whole train split of a
    54,000-photo window would be 0.7 GB decoded), and only the chosen images are
    decoded. Deterministic for a given split and seed; returned in file order.
    """
    files = _split_files(split_dir)
    if not files:
        raise FileNotFoundError(f"no TFRecord files in {split_dir}")
    spec = {PIXELS_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = (
        tf.data.TFRecordDataset(files, compression_type=features.compression_type(files))
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec)[PIXELS_KEY])
    )
    rng = np.random.default_rng(seed)
    keys = np.zeros(0, dtype=np.float64)
    order = np.zeros(0, dtype=np.int64)  # position of each kept record in the split
    kept = np.zeros(0, dtype=object)  # its serialized pixels
    seen = 0
    for serialized in dataset.as_numpy_iterator():
        keys = np.concatenate([keys, rng.random(len(serialized))])
        order = np.concatenate([order, np.arange(seen, seen + len(serialized))])
        kept = np.concatenate([kept, np.asarray(list(serialized), dtype=object)])
        seen += len(serialized)
        if len(keys) > count:
            best = np.argpartition(keys, count - 1)[:count] if count > 0 else np.zeros(0, dtype=np.int64)
            keys, order, kept = keys[best], order[best], kept[best]
    if not len(kept):
        return np.zeros((0, 0, 0, 1), dtype=np.uint8)
    in_file_order = np.argsort(order)
    return np.stack([tf.io.parse_tensor(kept[i], out_type=tf.uint8).numpy() for i in in_file_order])
