"""Tiny spans for the span-window and drift tests: records with a chosen device, label and lighting mix.

``write_span(root, span, mix)`` writes ``span-N/part-*.tfrecord.gz`` under
``root`` through the data contract's own writer, one record per entry of a
:class:`Mix`; images are small gray JPEGs of a chosen brightness and size.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def gray_jpeg(level: int, size: tuple[int, int] = (80, 64), seed: int = 0) -> bytes:
    """A gray JPEG whose mean brightness is about ``level`` (0..255), with a little noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = np.clip(level + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class Mix:
    """What one span holds: ``count`` records cycling through these values."""

    count: int = 60
    devices: Sequence[str] = ("zebra-tc52", "honeywell-ct40")
    labels: Sequence[int] = (0, 0, 1, 2)
    lightings: Sequence[str] = ("bright", "normal", "dim")
    brightness: int = 120
    size: tuple[int, int] = (80, 64)


def write_span(root: Path | str, span: int, mix: Mix = Mix(), shards: int = 2) -> int:
    """Write span ``span`` of ``mix`` under ``root``; return the number of records."""
    from shelf_data.contract import PhotoRecord, ShardedWriter

    with ShardedWriter(str(root), span, shards) as writer:
        for i in range(mix.count):
            writer.write(
                PhotoRecord(
                    image=gray_jpeg(mix.brightness, mix.size, seed=span * 1000 + i),
                    label=mix.labels[i % len(mix.labels)],
                    lane_id=1 + i % 40,
                    device_id=mix.devices[i % len(mix.devices)],
                    captured_at=1_700_000_000 + span * 86_400 + i,
                    lighting=mix.lightings[i % len(mix.lightings)],
                )
            )
    return mix.count


def count_records(folder: Path | str) -> int:
    """Records in the TFRecord files (plain, or GZIP before) of an Examples artifact (every ``Split-*``)."""
    import tensorflow as tf

    files = sorted(str(p) for p in Path(folder).glob("Split-*/*") if p.is_file())
    assert files, f"no example files under {folder}"
    from shelf_model.features import compression_type

    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type=compression_type(files)))
