"""Synthetic shelf-front photos in the data contract (``shelf-audit synth``).

Each photo shows 1-3 shelf rows of facings from a fixed catalogue; ``misplaced`` and ``damaged`` photos
carry one odd, missing or damaged facing, and a camera model per scanner varies perspective, lighting,
blur, noise, JPEG quality and size, so slices differ in difficulty. Photo ``i`` of span ``s`` draws
everything from ``np.random.default_rng([seed, s, i])``: the same ``(seed, span, count, shards)`` gives
byte-identical shards.

See docs/data-contract.md#synthetic-photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import logging
import math
import time
from collections.abc import Iterator, Mapping

import numpy as np
from PIL import Image, ImageFilter

from shelf_data import contract

logger = logging.getLogger(__name__)

# Class mix, applied per block of 20 consecutive indices (13/5/2) so shares are
# exact for multiples of 20 and within a point or two for any count >= 100.
_BLOCK = 20
_BLOCK_LABELS = (0,) * 13 + (1,) * 5 + (2,) * 2
PHOTOS_PER_SHARD = 500
# 2024-01-01T00:00:00Z; each span is one week later, photos a few seconds apart.
_EPOCH = 1_704_067_200
_SPAN_SECONDS = 7 * 86_400

_MIN_SIDE, _MAX_SIDE = 96, 320
_CANVAS_W = 240  # scene width in pixels; height follows the output aspect ratio
_NUM_SKUS = 64
_CATALOG_SEED = 20_240_101
_NOISE_BANK_SIDE = _MAX_SIDE + 64


@dataclasses.dataclass(frozen=True)
class Device:
    """A scanner model and its characteristic optics and encoder."""

    name: str
    weight: float  # share of photos taken with it
    noise: float  # sensor noise sigma, 0..255 scale, before lighting gain
    blur: tuple[float, float]  # Gaussian blur radius range at output size
    jpeg_quality: tuple[int, int]  # inclusive range
    gray_share: float  # share of photos it delivers as grayscale


DEVICES: tuple[Device, ...] = (
    Device("zebra-tc52", 0.35, 3.0, (0.0, 0.6), (82, 95), 0.15),
    Device("honeywell-ct40", 0.30, 5.0, (0.3, 0.9), (70, 88), 0.30),
    Device("zebra-mc33", 0.20, 6.0, (0.5, 1.1), (62, 80), 0.25),
    # The old, noisy one: the hard device slice.
    Device("datalogic-memor10", 0.15, 11.0, (0.7, 1.4), (45, 65), 0.55),
)

LIGHTINGS: tuple[str, ...] = ("bright", "normal", "dim")


@dataclasses.dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    out_dir: str
    span: int
    count: int
    class_counts: Mapping[str, int]
    paths: tuple[str, ...]
    seconds: float
    bytes_written: int

    @property
    def photos_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class _Sku:
    """Packaging design of one product, in coordinates relative to a facing."""

    base: np.ndarray  # RGB 0..1
    bands: tuple[tuple[float, float, np.ndarray], ...]  # (y0, y1, colour)
    stripes: tuple[tuple[float, float, float], ...]  # text-like lines: (y, x0, x1)
    stripe_colour: np.ndarray
    logo: tuple[str, float, float, float, np.ndarray]  # (shape, cy, cx, radius, colour)
    barcode: tuple[float, float, float, float, np.ndarray]  # (y0, x0, y1, x1, bars as 0/1)
    aspect: float  # facing width / height
    height: float  # package height as a share of the row's free height
    gray: float  # mean luminance of a rendered facing, 0..1


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[_Sku, ...]:
    """The fixed catalogue of SKUs (same for every seed: a store's assortment)."""
    rng = np.random.default_rng(_CATALOG_SEED)
    skus = []
    # Spread target luminance evenly so every SKU has partners far from it in gray.
    targets = rng.permutation(np.linspace(0.04, 0.97, _NUM_SKUS))
    for target in targets:
        # Base colour = target gray plus a chroma that does not change the gray level.
        hue = rng.random(3).astype(np.float32)
        chroma = hue - _luma(hue)
        room = min(target, 1 - target) / max(float(np.abs(chroma).max()), 1e-3)
        base = np.clip(target + chroma * room * rng.uniform(0.4, 1.0), 0, 1).astype(np.float32)
        accent = rng.random(3).astype(np.float32)
        bands = []
        for _ in range(rng.integers(1, 3)):
            y0 = float(rng.uniform(0.05, 0.75))
            bands.append((y0, y0 + float(rng.uniform(0.06, 0.16)), (0.5 * accent + 0.5 * base).astype(np.float32)))
        ys = rng.uniform(0.15, 0.6) + np.arange(rng.integers(2, 5)) * 0.07
        stripes = tuple((float(y), float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.55, 0.9))) for y in ys if y < 0.78)
        stripe_colour = np.full(3, 0.05 if target > 0.45 else 0.95, dtype=np.float32)
        logo = (
            str(rng.choice(["circle", "diamond", "square"])),
            float(rng.uniform(0.25, 0.55)),
            float(rng.uniform(0.35, 0.65)),
            float(rng.uniform(0.08, 0.15)),
            rng.random(3).astype(np.float32),
        )
        bx0 = float(rng.uniform(0.1, 0.4))
        barcode = (0.8, bx0, 0.94, bx0 + 0.45, (rng.random(23) < 0.5).astype(np.float32))
        sku = _Sku(
            base=base,
            bands=tuple(bands),
            stripes=stripes,
            stripe_colour=stripe_colour,
            logo=logo,
            barcode=barcode,
            aspect=float(rng.uniform(0.5, 0.95)),
            height=float(rng.uniform(0.72, 0.95)),
            gray=0.0,
        )
        gray = float(_luma(_render_facing(sku, 48, 32)).mean())
        skus.append(dataclasses.replace(sku, gray=gray))
    return tuple(skus)


def _render_facing(sku: _Sku, h: int, w: int) -> np.ndarray:
    """Render one facing of ``sku`` as an ``(h, w, 3)`` float32 image in 0..1."""
    tile = np.empty((h, w, 3), dtype=np.float32)
    tile[:] = sku.base
    for y0, y1, colour in sku.bands:
        tile[int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1)] = colour
    # Text-like stripes: rows of short dark (or light) dashes.
    thick = max(1, h // 40)
    for y, x0, x1 in sku.stripes:
        r = int(y * h)
        tile[r : r + thick, int(x0 * w) : int(x1 * w)] = sku.stripe_colour
    shape, cy, cx, rad, colour = sku.logo
    yy = (np.arange(h, dtype=np.float32)[:, None] / h - cy) * (h / w)
    xx = np.arange(w, dtype=np.float32)[None, :] / w - cx
    if shape == "circle":
        mask = yy * yy + xx * xx < rad * rad
    elif shape == "diamond":
        mask = np.abs(yy) + np.abs(xx) < rad * 1.3
    else:
        mask = np.maximum(np.abs(yy), np.abs(xx)) < rad * 0.9
    tile[mask] = colour
    # Barcode: white label with black bars, always gray whatever the packaging.
    by0, bx0, by1, bx1, bars = sku.barcode
    r0, r1, c0, c1 = int(by0 * h), int(by1 * h), int(bx0 * w), int(bx1 * w)
    if r1 > r0 and c1 > c0:
        cols = bars[(np.arange(c1 - c0) * len(bars)) // (c1 - c0)]
        tile[r0:r1, c0:c1] = (0.92 - 0.85 * cols)[None, :, None]
    # Box shading: edges of a facing are a little darker than its face.
    shade = 1.0 - 0.25 * np.abs(np.linspace(-1, 1, w, dtype=np.float32)) ** 3
    tile *= shade[None, :, None]
    return tile


# ---------------------------------------------------------------- damage


def _damage(tile: np.ndarray, kind: str, rng: np.random.Generator, wall: np.ndarray) -> np.ndarray:
    """Return a damaged copy of ``tile``: a large, visible change of its look."""
    h, w, _ = tile.shape
    out = tile.copy()
    yy = np.arange(h, dtype=np.float32)[:, None] / h
    xx = np.arange(w, dtype=np.float32)[None, :] / w
    if kind == "torn":
        # A jagged tear from one side exposes bright cardboard with a dark rim.
        jag = np.cumsum(rng.normal(0, 0.05, h)).astype(np.float32)
        edge = float(rng.uniform(0.55, 0.7)) + float(rng.uniform(-0.3, 0.3)) * (yy[:, 0] - 0.5) + jag - jag.mean()
        dist = (xx - edge[:, None]) if rng.random() < 0.5 else (edge[:, None] - xx)
        torn = dist < 0
        # Light cardboard shows through dark packaging, the dark inside of the box through light one.
        light = float(_luma(tile).mean()) < 0.45
        fibre = (0.92 if light else 0.12) + 0.08 * np.sin(yy * 90 + xx * 7)
        out[torn] = np.broadcast_to(fibre[..., None] * np.float32([0.97, 0.92, 0.82]), out.shape)[torn]
        out[np.abs(dist) < 2.5 / w] = 0.03 if light else 0.95
    elif kind == "stained":
        # An irregular blob with a dark ring and drips running down, like a leak that dried.
        field = np.zeros((h, w), dtype=np.float32)
        for _ in range(5):
            cy, cx = rng.uniform(0.2, 0.55), rng.uniform(0.2, 0.8)
            sy, sx = rng.uniform(0.12, 0.25), rng.uniform(0.15, 0.3)
            field += np.exp(-(((yy - cy) / sy) ** 2) - ((xx - cx) / sx) ** 2)
        for x in rng.uniform(0.25, 0.75, 3):
            drip = (np.abs(xx - x) < 1.5 / w) & (yy > 0.3) & (yy < rng.uniform(0.7, 0.95))
            field += 2.0 * drip
        blob = field > 0.6
        ring = (field > 0.4) & ~blob
        # Dark packaging shows a pale dried residue, light packaging a dark soak.
        if float(_luma(tile).mean()) < 0.45:
            out[blob] = out[blob] * 0.2 + np.float32([0.8, 0.76, 0.68])
        else:
            out[blob] = out[blob] * 0.2 + np.float32([0.1, 0.07, 0.03])
        out[ring] = 0.03
    elif kind == "crushed":
        # Squashed to 50-65% of its height with a slanted top and strong diagonal folds.
        keep = float(rng.uniform(0.5, 0.65))
        src = np.clip(((yy[:, 0] - (1 - keep)) / keep * h).astype(np.int32), 0, h - 1)
        out = tile[src]
        top = (1 - keep) + float(rng.uniform(-0.15, 0.15)) * (xx[0] - 0.5)
        empty = yy < top[None, :]
        out[empty] = wall
        # Additive, so the folds show on dark packaging too.
        folds = 0.35 * np.sign(np.sin((yy * 2.5 + xx * float(rng.choice([-1.2, 1.2]))) * 2 * np.pi))
        out[~empty] += folds[~empty][:, None]
    else:  # dented
        # Pushed in along a V-shaped crease: lit above it, in shadow below, the crease dark.
        cy, cx, k = rng.uniform(0.2, 0.4), rng.uniform(0.35, 0.65), rng.uniform(0.5, 0.9)
        crease = cy + k * np.abs(xx - cx) * (w / h)
        below = (yy > crease) & (yy < crease + 0.45)
        above = (yy <= crease) & (yy > crease - 0.2)
        out[above] += 0.35
        out[below] -= 0.3
        out[np.abs(yy - crease) < 2.0 / h] = 0.02
    return np.clip(out, 0, 1)


# ---------------------------------------------------------------- scene


def _scene(h: int, w: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """Render the shelf front as an ``(h, w, 3)`` float32 image in 0..1."""
    skus = _catalog()
    img = np.empty((h, w, 3), dtype=np.float32)
    wall = (rng.uniform(0.22, 0.38) * np.float32([1.0, 0.97, 0.92])).astype(np.float32)
    img[:] = wall
    n_rows = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    # Content stays inside a margin so camera jitter never cuts the anomaly off.
    mx, my = int(0.09 * w), int(0.08 * h)
    row_h = (h - 2 * my) / n_rows
    board = max(3, int(0.1 * row_h))
    rows = []
    for r in range(n_rows):
        y_top = my + int(r * row_h)
        y_board = my + int((r + 1) * row_h) - board
        sku_id = int(rng.integers(len(skus)))
        sku = skus[sku_id]
        fh = int((y_board - y_top - 2) * sku.height)
        n = int(np.clip(round((w - 2 * mx) / (fh * sku.aspect + 2)), 3, 6))
        pitch = (w - 2 * mx) / n
        rows.append((y_top, y_board, sku_id, fh, n, pitch))
        # Shelf board: lit top edge, darker front, with white price tags.
        img[y_board : y_board + board] = 0.62
        img[y_board : y_board + max(1, board // 3)] = 0.8
        tag_w = max(4, int(pitch * 0.45))
        for t in range(0, n, 2):
            x = mx + int(t * pitch + pitch * 0.25)
            img[y_board + board // 3 : y_board + board - 1, x : x + tag_w] = 0.95
            img[y_board + board // 2, x + 1 : x + tag_w - 1] = 0.1
        # Facings stand on the board, side by side.
        tile = _render_facing(sku, fh, max(3, int(pitch) - 2))
        for f in range(n):
            x = mx + int(f * pitch) + 1
            jitter = float(rng.uniform(0.94, 1.06))
            img[y_board - fh : y_board, x : x + tile.shape[1]] = tile * jitter
    if label == 0:
        return img
    # The anomaly: one facing of one row, never an edge facing (it stays in view).
    y_top, y_board, sku_id, fh, n, pitch = rows[int(rng.integers(n_rows))]
    f = int(rng.integers(1, n - 1))
    x0, x1 = mx + int(f * pitch), mx + int((f + 1) * pitch)
    tw = max(3, int(pitch) - 2)
    if label == 1 and rng.random() < 0.45:
        # Gap: a missing facing leaves the deep, shadowed back of the shelf.
        depth = np.linspace(0.05, 0.11, y_board - y_top, dtype=np.float32)[:, None, None]
        img[y_top:y_board, x0:x1] = depth
    elif label == 1:
        # Wrong SKU: far from the row's in gray level, standing at its own package height.
        own = skus[sku_id]
        by_distance = sorted(range(len(skus)), key=lambda i: -abs(skus[i].gray - own.gray))
        far = [i for i in by_distance if abs(skus[i].gray - own.gray) > 0.35] or by_distance[:4]
        other = skus[far[int(rng.integers(len(far)))]]
        oh = min(int((y_board - y_top - 2) * other.height), y_board - y_top - 1)
        img[y_top:y_board, x0:x1] = wall
        img[y_board - oh : y_board, x0 + 1 : x0 + 1 + tw] = _render_facing(other, oh, tw)
    else:
        kind = str(rng.choice(["torn", "stained", "crushed", "dented"]))
        tile = _render_facing(skus[sku_id], fh, tw)
        img[y_board - fh : y_board, x0 + 1 : x0 + 1 + tw] = _damage(tile, kind, rng, wall)
    return img


# ---------------------------------------------------------------- camera


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise, cropped at random offsets (cheaper than drawing per photo)."""
    rng = np.random.default_rng(_CATALOG_SEED + 1)
    return rng.standard_normal((_NOISE_BANK_SIDE, _NOISE_BANK_SIDE, 3), dtype=np.float32)


def _perspective_coeffs(dst_w: int, dst_h: int, quad: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping the output rectangle onto ``quad`` in the source.

    Closed-form square-to-quad mapping (Heckbert 1989) in plain floats: once
    TensorFlow is loaded, ``np.linalg.solve`` on an 8x8 system costs
    milliseconds per call (BLAS threading), more than rendering a photo.
    """
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad.tolist()
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    det = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / det
    h = (dx1 * sy - sx * dy1) / det
    # Unit square -> quad, then scale (u, v) = (x / dst_w, y / dst_h).
    return (
        (x1 - x0 + g * x1) / dst_w,
        (x3 - x0 + h * x3) / dst_h,
        x0,
        (y1 - y0 + g * y1) / dst_w,
        (y3 - y0 + h * y3) / dst_h,
        y0,
        g / dst_w,
        h / dst_h,
    )


def _photo(index: int, seed: int, span: int, label: int) -> contract.PhotoRecord:
    """Render, photograph and encode photo ``index``; everything comes from its own RNG."""
    rng = np.random.default_rng([seed, span, index])
    device = DEVICES[int(rng.choice(len(DEVICES), p=[d.weight for d in DEVICES]))]
    lane = int(rng.integers(contract.LANE_MIN, contract.LANE_MAX + 1))
    # The back lanes (31..40) are poorly lit: lighting and lane slices differ.
    p_dim = 0.4 if lane > 30 else 0.12
    lighting = LIGHTINGS[int(rng.choice(3, p=[0.3, 0.7 - p_dim, p_dim]))]
    captured_at = _EPOCH + span * _SPAN_SECONDS + index * 9 + int(rng.integers(0, 9))

    out_w = int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))
    out_h = int(np.clip(round(out_w / rng.uniform(0.75, 1.35)), _MIN_SIDE, _MAX_SIDE))
    canvas_h = max(contract.MIN_IMAGE_SIDE, round(_CANVAS_W * out_h / out_w))
    img = _scene(canvas_h, _CANVAS_W, label, rng)

    # Lighting: overall gain, a colour cast and an uneven falloff across the shelf.
    gain = {"bright": (1.05, 1.25), "normal": (0.85, 1.0), "dim": (0.3, 0.45)}[lighting]
    gx = np.linspace(-1, 1, _CANVAS_W, dtype=np.float32) * rng.uniform(-0.3, 0.3)
    gy = np.linspace(-1, 1, canvas_h, dtype=np.float32) * rng.uniform(-0.25, 0.25)
    falloff = (1 + gy[:, None]) * (1 + gx[None, :]) * np.float32(255 * rng.uniform(*gain))
    # In place: temporaries of the full canvas cost more than the arithmetic.
    img *= falloff[..., None]
    img *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
    gray = rng.random() < device.gray_share
    pil = Image.fromarray(np.clip(img, 0, 255, out=img).astype(np.uint8), "RGB")
    if gray:
        pil = pil.convert("L")

    # Camera pose: small rotation, perspective (keystone) and framing jitter.
    cw, ch = _CANVAS_W, canvas_h
    angle = math.radians(rng.uniform(-5, 5))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * [cw / 2, ch / 2]
    corners *= rng.uniform(0.9, 0.98)
    corners += rng.uniform(-0.04, 0.04, (4, 2)) * [cw, ch]
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = corners @ rot.T
    # Shrink the view until it lies inside the scene: no empty corners in the photo.
    corners *= min(1.0, float(np.min(np.array([cw / 2 - 1, ch / 2 - 1]) / np.abs(corners).max(axis=0))))
    centre = np.array([cw / 2, ch / 2]) + rng.uniform(-0.015, 0.015, 2) * [cw, ch]
    quad = corners + centre
    # NEAREST is 5x faster than BILINEAR here; the blur below removes its jaggies.
    coeffs = _perspective_coeffs(out_w, out_h, quad)
    pil = pil.transform((out_w, out_h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.NEAREST)
    radius = max(0.5, rng.uniform(*device.blur) * out_w / 200)
    pil = pil.filter(ImageFilter.BoxBlur(radius))

    # Sensor noise grows when the scene is dim (the camera raises its gain).
    sigma = device.noise * (1.5 if lighting == "dim" else 1.0)
    oy, ox = rng.integers(0, _NOISE_BANK_SIDE - out_h + 1), rng.integers(0, _NOISE_BANK_SIDE - out_w + 1)
    noise = _noise_bank()[oy : oy + out_h, ox : ox + out_w]
    pixels = (noise[..., 0] if gray else noise) * np.float32(sigma)
    pixels += np.asarray(pil)
    pil = Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8), "L" if gray else "RGB")

    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=int(rng.integers(device.jpeg_quality[0], device.jpeg_quality[1] + 1)))
    return contract.PhotoRecord(
        image=buffer.getvalue(),
        label=label,
        lane_id=lane,
        device_id=device.name,
        captured_at=captured_at,
        lighting=lighting,
    )


def label_for(index: int, seed: int = 0, span: int = 1) -> int:
    """Label of photo ``index``: a seeded shuffle of 13 ok / 5 misplaced / 2 damaged per block of 20."""
    block, pos = divmod(index, _BLOCK)
    order = np.random.default_rng([seed, span, block, _BLOCK]).permutation(_BLOCK)
    return _BLOCK_LABELS[int(order[pos])]


def iter_photos(count: int, seed: int = 0, span: int = 1) -> Iterator[contract.PhotoRecord]:
    """Yield the ``count`` photos of ``(seed, span)`` in index order (no files written)."""
    for index in range(count):
        yield _photo(index, seed, span, label_for(index, seed, span))


def default_num_shards(count: int) -> int:
    """About one shard per :data:`PHOTOS_PER_SHARD` photos, at least one."""
    return max(1, math.ceil(count / PHOTOS_PER_SHARD))


def generate(
    out_dir: str, span: int = 1, count: int = 1000, seed: int = 0, num_shards: int | None = None
) -> SynthSummary:
    """Write ``count`` synthetic photos to ``<out_dir>/span-<span>/part-*.tfrecord.gz``.

    Args:
        out_dir: root of the input bucket (local path or any ``tf.io.gfile`` URL).
        span: span number; its folder must not hold shards yet.
        count: number of photos.
        seed: seed of the whole set; the same arguments give byte-identical files.
        num_shards: number of shard files (default: :func:`default_num_shards`).

    Returns:
        A :class:`SynthSummary` with class counts, shard paths and timing.

    Raises:
        ValueError: on a negative seed or span, a count below 1 or shards below 1.
        FileExistsError: when the span folder already holds shards.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1. Received count={count}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0. Received seed={seed}")
    if span < 0:
        raise ValueError(f"span must be >= 0. Received span={span}")
    shards = default_num_shards(count) if num_shards is None else num_shards
    if shards < 1:
        raise ValueError(f"num_shards must be >= 1. Received num_shards={num_shards}")
    import tensorflow as tf

    counts = dict.fromkeys(contract.LABELS, 0)
    # Log about every 10% for large sets; small sets only get the summary.
    every = max(count // 10, 1) if count >= 1000 else count + 1
    start = time.perf_counter()
    with contract.ShardedWriter(out_dir, span, shards) as writer:
        for i, record in enumerate(iter_photos(count, seed, span), start=1):
            writer.write(record)
            counts[contract.LABELS[record.label]] += 1
            if i % every == 0 and i < count:
                rate = i / (time.perf_counter() - start)
                logger.info("synth: %d/%d photos (%.0f%%), %.0f photos/s", i, count, 100 * i / count, rate)
    seconds = time.perf_counter() - start
    paths = tuple(writer.paths)
    size = sum(tf.io.gfile.stat(p).length for p in paths)
    summary = SynthSummary(
        out_dir=out_dir,
        span=span,
        count=count,
        class_counts=counts,
        paths=paths,
        seconds=seconds,
        bytes_written=size,
    )
    logger.info(
        "synth: wrote %d photos (%s) in %.1f s, %.0f photos/s, %.1f MB in %d shard(s) under %s",
        count,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        seconds,
        summary.photos_per_second,
        size / 1e6,
        len(paths),
        writer.directory,
    )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` flags to ``parser``."""
    parser.add_argument("--out", required=True, help="root folder; photos go to OUT/span-N/")
    parser.add_argument("--span", type=int, default=1, help="span number (default 1)")
    parser.add_argument("--count", type=int, default=1000, help="number of photos (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed -> identical files (default 0)")
    parser.add_argument(
        "--shards", type=int, default=None, help=f"number of shard files (default: one per {PHOTOS_PER_SHARD} photos)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``shelf-audit synth``; return the exit status."""
    try:
        summary = generate(args.out, span=args.span, count=args.count, seed=args.seed, num_shards=args.shards)
    except (ValueError, FileExistsError) as err:
        logger.error("synth: %s", err)
        return 1
    print(
        f"wrote {summary.count} photos to {contract.span_dir(summary.out_dir, summary.span)} "
        f"({', '.join(f'{k} {v}' for k, v in summary.class_counts.items())}) "
        f"at {summary.photos_per_second:.0f} photos/s"
    )
    return 0
