"""Shared pytest fixtures.

Keep this file to fixtures that more than one test module needs, grouped by
topic, each with a one-line docstring. Fixtures that build data return
factories or small dataclasses, so tests state what they rely on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shelf_data.contract import PhotoRecord

# TFT switches the process to Keras 2; the whole stack must agree before
# TensorFlow is first imported by any test.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --- Images -----------------------------------------------------------------

ImageFactory = Callable[..., bytes]


def _encode_image(mode: str, size: tuple[int, int], fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A real photo-like image: a gradient plus noise, so every seed gives different bytes."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    pixels = ramp + rng.normal(0, 25, (height, width, 3)) + rng.uniform(0, 55, (1, 1, 3))
    rgb = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(size))
    else:
        image = rgb.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def make_image() -> ImageFactory:
    """Factory ``(mode, (width, height), fmt="JPEG", seed=0) -> bytes`` of a real encoded image."""
    return _encode_image


# --- Photo folders for `pack` -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhotoFolder:
    """A PHOTO_DIR of good photos, the defaults to pack it with, and what each photo must become."""

    root: Path
    expected: dict[str, PhotoRecord]  # relative path -> the record pack must write for it (image: the file's bytes)
    default_lane: int
    default_device: str

    def class_counts(self) -> dict[str, int]:
        from shelf_data import contract

        counts = dict.fromkeys(contract.LABELS, 0)
        for photo in self.expected.values():
            counts[contract.LABELS[photo.label]] += 1
        return counts


# (relative path, mode, size, format, metadata) where metadata is None (the
# photo gets the CLI defaults) or (lane, device, captured_at as written in the
# CSV, captured_at expected in the record, lighting).
_GOOD_PHOTOS = (
    ("ok/gray.jpg", "L", (100, 90), "JPEG", (3, "tc52-a", "1714000000", 1714000000, "bright")),
    ("ok/rgb.jpg", "RGB", (160, 120), "JPEG", (3, "tc52-b", "", None, "")),
    ("ok/rgb.png", "RGB", (120, 64), "PNG", None),
    ("ok/nested/deep.jpg", "RGB", (64, 64), "JPEG", (40, "ct40", "2024-05-01T10:00:00+00:00", 1714557600, "dim")),
    ("misplaced/rgba.png", "RGBA", (70, 90), "PNG", (12, "tc52-a", "", None, "")),
    ("misplaced/palette.png", "P", (96, 80), "PNG", (12, "ct40", "", None, "uneven")),
    ("misplaced/gray.png", "L", (200, 150), "PNG", (1, "tc52-b", "", None, "")),
    ("damaged/tall.jpg", "RGB", (80, 200), "JPEG", (25, "ct40", "1714000100", 1714000100, "")),
    ("damaged/gray.jpg", "L", (128, 128), "JPEG", None),
)
_DEFAULT_LANE = 7
_DEFAULT_DEVICE = "cli-default"


def build_photo_folder(root: Path) -> PhotoFolder:
    """Write :data:`_GOOD_PHOTOS` and their ``metadata.csv`` under ``root``."""
    from shelf_data import contract

    expected: dict[str, PhotoRecord] = {}
    rows = []
    for seed, (rel, mode, size, fmt, meta) in enumerate(_GOOD_PHOTOS):
        data = _encode_image(mode, size, fmt, seed=seed)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        label = contract.LABELS.index(rel.split("/")[0])
        if meta is None:
            expected[rel] = PhotoRecord(data, label, _DEFAULT_LANE, _DEFAULT_DEVICE)
            continue
        lane, device, captured_text, captured_at, lighting = meta
        rows.append(
            {"file": rel, "lane_id": lane, "device_id": device, "captured_at": captured_text, "lighting": lighting}
        )
        expected[rel] = PhotoRecord(data, label, lane, device, captured_at, lighting or None)
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "lane_id", "device_id", "captured_at", "lighting"])
        writer.writeheader()
        writer.writerows(rows)
    return PhotoFolder(root, expected, _DEFAULT_LANE, _DEFAULT_DEVICE)


@pytest.fixture
def photo_folder(tmp_path: Path) -> PhotoFolder:
    """A fresh PHOTO_DIR of JPEG/PNG photos in mixed sizes and modes, with a metadata.csv."""
    return build_photo_folder(tmp_path / "photos")


@pytest.fixture(scope="session")
def packed_photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoFolder]:
    """``(out_dir, folder)``: a photo folder packed once into ``out_dir/span-1`` (read-only for tests)."""
    from shelf_data.pack import pack

    base = tmp_path_factory.mktemp("packed")
    folder = build_photo_folder(base / "photos")
    report = pack(
        str(folder.root), str(base / "data"), span=1, lane_id=folder.default_lane, device_id=folder.default_device
    )
    assert report.outcome == "complete", report.format()
    return base / "data", folder


# --- Object stores --------------------------------------------------------------


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory):
    """A GCS emulator and a moto S3 server on free local ports, their buckets made, the clients' variables set."""
    from support import stores

    servers = stores.start_servers(tmp_path_factory.mktemp("stores"))
    try:
        with stores.environment(servers.env):
            yield servers
    finally:
        servers.stop()


# --- Test tiers ----------------------------------------------------------------

TIERS = ("unit", "component", "e2e", "kfp", "mysql", "notebook", "browser", "mediapipe", "image", "stores")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier marker, so `-m` selections never miss or double-count one."""
    wrong = []
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {sorted(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            "each test needs exactly one tier marker of " + ", ".join(TIERS) + ":\n" + "\n".join(wrong)
        )
