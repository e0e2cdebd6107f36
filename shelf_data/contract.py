"""The data contract: feature keys, labels and how records are written.

Every tool that writes photos (``synth``, ``pack``) goes through
:class:`ShardedWriter` and :func:`make_example`, so the on-disk layout
``<out>/span-<N>/part-XXXXX-of-YYYYY.tfrecord.gz`` and the feature types are
defined once. TensorFlow is imported lazily: the CLI starts fast and pure
helpers stay importable without it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

IMAGE_KEY = "image/encoded"
LABEL_KEY = "label"
LANE_KEY = "lane_id"
DEVICE_KEY = "device_id"
CAPTURED_AT_KEY = "captured_at"
LIGHTING_KEY = "lighting"

LABELS: tuple[str, ...] = ("ok", "misplaced", "damaged")
NUM_CLASSES = len(LABELS)
# What each class weighs, in training and in the gate's class-weighted recall: a missed damaged shelf costs double.
CLASS_WEIGHTS: Mapping[str, float] = MappingProxyType({"ok": 1.0, "misplaced": 1.0, "damaged": 2.0})
# The features every photo carries beside its pixels that the gate slices on and drift compares.
SLICE_FEATURES: tuple[str, ...] = (LABEL_KEY, LANE_KEY, DEVICE_KEY, LIGHTING_KEY)
LANE_MIN, LANE_MAX = 1, 40
MIN_IMAGE_SIDE = 64

SHARD_SUFFIX = ".tfrecord.gz"


def span_dir(out_dir: str, span: int) -> str:
    """Return the folder that holds one span: ``<out_dir>/span-<span>``."""
    if span < 0:
        raise ValueError(f"span must be >= 0. Received span={span}")
    return os.path.join(out_dir, f"span-{span}")


@dataclasses.dataclass(frozen=True)
class PhotoRecord:
    """One labelled photo as the contract defines it."""

    image: bytes
    label: int
    lane_id: int
    device_id: str
    captured_at: int | None = None
    lighting: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the field when the record breaks the contract."""
        if not self.image:
            raise ValueError("image/encoded is empty")
        if not 0 <= self.label < NUM_CLASSES:
            raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}. Received label={self.label}")
        if not LANE_MIN <= self.lane_id <= LANE_MAX:
            raise ValueError(f"lane_id must be in {LANE_MIN}..{LANE_MAX}. Received lane_id={self.lane_id}")
        if not self.device_id:
            raise ValueError("device_id is empty")


def make_example(record: PhotoRecord):
    """Build the ``tf.train.Example`` for ``record`` (validated first)."""
    import tensorflow as tf

    record.validate()

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        IMAGE_KEY: _bytes(record.image),
        LABEL_KEY: _int(record.label),
        LANE_KEY: _int(record.lane_id),
        DEVICE_KEY: _bytes(record.device_id.encode("utf-8")),
    }
    if record.captured_at is not None:
        feature[CAPTURED_AT_KEY] = _int(record.captured_at)
    if record.lighting is not None:
        feature[LIGHTING_KEY] = _bytes(record.lighting.encode("utf-8"))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_example(serialized: bytes) -> PhotoRecord:
    """Inverse of :func:`make_example` for one serialized example."""
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    f = example.features.feature

    def _opt_int(key: str) -> int | None:
        return f[key].int64_list.value[0] if key in f and f[key].int64_list.value else None

    def _opt_str(key: str) -> str | None:
        return f[key].bytes_list.value[0].decode("utf-8") if key in f and f[key].bytes_list.value else None

    return PhotoRecord(
        image=f[IMAGE_KEY].bytes_list.value[0],
        label=int(f[LABEL_KEY].int64_list.value[0]),
        lane_id=int(f[LANE_KEY].int64_list.value[0]),
        device_id=f[DEVICE_KEY].bytes_list.value[0].decode("utf-8"),
        captured_at=_opt_int(CAPTURED_AT_KEY),
        lighting=_opt_str(LIGHTING_KEY),
    )


class ShardedWriter:
    """Write records round-robin into ``num_shards`` GZIP TFRecord files.

    Files are written under temporary names and renamed on a clean
    :meth:`close`, so an interrupted run never leaves shards that look
    complete. Use as a context manager.
    """

    def __init__(self, out_dir: str, span: int, num_shards: int) -> None:
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1. Received num_shards={num_shards}")
        self.directory = span_dir(out_dir, span)
        self.num_shards = num_shards
        self.count = 0
        self._writers: list = []
        self._paths: list[str] = [
            os.path.join(self.directory, f"part-{i:05d}-of-{num_shards:05d}{SHARD_SUFFIX}") for i in range(num_shards)
        ]

    @property
    def paths(self) -> Sequence[str]:
        """Final paths of the shards (valid after a clean close)."""
        return tuple(self._paths)

    def __enter__(self) -> ShardedWriter:
        import tensorflow as tf

        tf.io.gfile.makedirs(self.directory)
        existing = tf.io.gfile.glob(os.path.join(self.directory, "*" + SHARD_SUFFIX))
        if existing:
            raise FileExistsError(
                f"{self.directory} already holds {len(existing)} shard(s); choose another --span or --out"
            )
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        self._writers = [tf.io.TFRecordWriter(p + ".tmp", options) for p in self._paths]
        return self

    def write(self, record: PhotoRecord) -> None:
        """Append one record to the next shard."""
        # deterministic=True: the feature map is otherwise serialised in random order.
        example = make_example(record).SerializeToString(deterministic=True)
        self._writers[self.count % self.num_shards].write(example)
        self.count += 1

    def write_all(self, records: Iterable[PhotoRecord]) -> int:
        """Write every record; return how many were written."""
        for record in records:
            self.write(record)
        return self.count

    def __exit__(self, exc_type, exc, tb) -> None:
        import tensorflow as tf

        for writer in self._writers:
            writer.close()
        for path in self._paths:
            if exc_type is None:
                tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
            elif tf.io.gfile.exists(path + ".tmp"):
                tf.io.gfile.remove(path + ".tmp")


def read_records(pattern: str) -> Iterable[PhotoRecord]:
    """Yield every record of the (GZIP or plain) TFRecord files matching ``pattern``."""
    import tensorflow as tf

    for path in sorted(tf.io.gfile.glob(pattern)):
        compression = "GZIP" if path.endswith(".gz") else ""
        for raw in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
            yield parse_example(raw)
