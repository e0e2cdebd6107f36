"""``shelf-audit inspect``: count the photos in a data folder and draw a contact sheet.

Reads every ``DIR/span-*/*.tfrecord*`` (GZIP or plain), prints counts per
span, class (with shares), lane, device and lighting as tables, and writes a
PNG contact sheet with a few sample photos per class, because people want to
look at their data before they train on it. Pillow draws the sheet; nothing
else beyond TensorFlow (to read the records) is needed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import logging
import os
import random
import re
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from shelf_data import contract

logger = logging.getLogger(__name__)

DEFAULT_PER_CLASS = 8
SHEET_NAME = "contact_sheet.png"
# Contact sheet geometry, in pixels. Public so tests and callers can predict
# the sheet size with sheet_size().
THUMB = 128
CAPTION_H = 16
PAD = 8
LABEL_W = 120
TITLE_H = 28
# Fixed seed: the same data gives the same sample photos on every run.
_SAMPLE_SEED = 0
_BACKGROUND = (245, 245, 245)
_TILE_BACKGROUND = (60, 60, 60)
_NO_LIGHTING = "(none)"


@dataclasses.dataclass
class DataSummary:
    """Counts over every record of a data folder, and where the contact sheet went."""

    data_dir: str
    files: tuple[str, ...]
    spans: dict[str, int]
    span_classes: dict[str, dict[str, int]]
    classes: dict[str, int]
    lanes: dict[int, int]
    devices: dict[str, int]
    lighting: dict[str, int]
    unreadable: int = 0
    sheet_path: str | None = None

    @property
    def total(self) -> int:
        """Number of readable records."""
        return sum(self.spans.values())


@dataclasses.dataclass(frozen=True)
class _Sample:
    image: bytes
    lane_id: int
    device_id: str


def class_name(label: int) -> str:
    """Contract name of ``label``, or ``label N`` for a value outside the contract."""
    return contract.LABELS[label] if 0 <= label < contract.NUM_CLASSES else f"label {label}"


def sheet_size(num_rows: int, per_class: int) -> tuple[int, int]:
    """Return ``(width, height)`` of a contact sheet with ``num_rows`` classes of ``per_class`` photos."""
    width = LABEL_W + PAD + per_class * (THUMB + PAD)
    height = TITLE_H + num_rows * (THUMB + CAPTION_H + PAD) + PAD
    return width, height


def _span_order(name: str) -> tuple[int, str]:
    match = re.fullmatch(r"span-(\d+)", name)
    return (int(match.group(1)) if match else -1, name)


def list_files(data_dir: str) -> list[str]:
    """Every TFRecord file of every span under ``data_dir``, sorted.

    ``*.tmp`` files are left out: ShardedWriter writes shards under a ``.tmp``
    name until they are complete, and those names match ``*.tfrecord*`` too.
    """
    import tensorflow as tf

    pattern = os.path.join(data_dir, "span-*", "*.tfrecord*")
    return sorted(p for p in tf.io.gfile.glob(pattern) if not p.endswith(".tmp"))


def inspect(
    data_dir: str,
    sheet_path: str | None = None,
    per_class: int = DEFAULT_PER_CLASS,
) -> DataSummary:
    """Count the records under ``data_dir`` and draw the contact sheet.

    Args:
        data_dir: root of the input bucket (holds ``span-N/`` folders).
        sheet_path: where to write the PNG (default ``<data_dir>/contact_sheet.png``).
        per_class: sample photos per class on the sheet; 0 writes no sheet.

    Returns:
        A :class:`DataSummary`; ``sheet_path`` is None when no sheet was written
        (no readable record, or ``per_class`` 0).

    Raises:
        ValueError: when ``per_class`` is negative.
        FileNotFoundError: when no ``span-*/*.tfrecord*`` file exists.
    """
    import tensorflow as tf

    if per_class < 0:
        raise ValueError(f"per_class must be >= 0. Received per_class={per_class}")
    files = list_files(data_dir)
    if not files:
        raise FileNotFoundError(f"no records found: nothing matches {os.path.join(data_dir, 'span-*', '*.tfrecord*')}")

    spans: collections.Counter[str] = collections.Counter()
    span_classes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    classes: collections.Counter[str] = collections.Counter()
    lanes: collections.Counter[int] = collections.Counter()
    devices: collections.Counter[str] = collections.Counter()
    lighting: collections.Counter[str] = collections.Counter()
    unreadable = 0
    # Reservoir sampling keeps K photos per class in memory, whatever the data size.
    rng = random.Random(_SAMPLE_SEED)
    samples: dict[int, list[_Sample]] = collections.defaultdict(list)
    seen: collections.Counter[int] = collections.Counter()

    for path in files:
        span = os.path.basename(os.path.dirname(path))
        compression = "GZIP" if path.endswith(".gz") else ""
        try:
            for raw in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
                try:
                    record = contract.parse_example(raw)
                except Exception:  # any malformed record is counted, not fatal
                    unreadable += 1
                    continue
                name = class_name(record.label)
                spans[span] += 1
                span_classes[span][name] += 1
                classes[name] += 1
                lanes[record.lane_id] += 1
                devices[record.device_id] += 1
                lighting[record.lighting if record.lighting is not None else _NO_LIGHTING] += 1
                seen[record.label] += 1
                sample = _Sample(record.image, record.lane_id, record.device_id)
                if len(samples[record.label]) < per_class:
                    samples[record.label].append(sample)
                else:
                    slot = rng.randrange(seen[record.label])
                    if slot < per_class:
                        samples[record.label][slot] = sample
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            # A corrupt file should not hide the counts of all the others.
            logger.error("inspect: cannot read %s: %s", path, err.message)
            unreadable += 1

    # Classes in contract order (zeros included: an absent class is news),
    # then any out-of-contract labels.
    class_order = [*contract.LABELS, *sorted(n for n in classes if n not in contract.LABELS)]
    summary = DataSummary(
        data_dir=data_dir,
        files=tuple(files),
        spans={s: spans[s] for s in sorted(spans, key=_span_order)},
        span_classes={s: {c: span_classes[s][c] for c in class_order} for s in sorted(spans, key=_span_order)},
        classes={c: classes[c] for c in class_order},
        lanes=dict(sorted(lanes.items())),
        devices=dict(sorted(devices.items(), key=lambda kv: (-kv[1], kv[0]))),
        lighting=dict(sorted(lighting.items(), key=lambda kv: (-kv[1], kv[0]))),
        unreadable=unreadable,
    )
    if summary.total and per_class:
        summary.sheet_path = sheet_path or os.path.join(data_dir, SHEET_NAME)
        rows = [(label, class_name(label)) for label in range(contract.NUM_CLASSES)]
        rows += sorted((label, class_name(label)) for label in samples if class_name(label) not in contract.LABELS)
        _write_sheet(summary, rows, samples, per_class, summary.sheet_path)
    return summary


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow >= 10.1 ships a scalable default font when built with FreeType;
    # the bitmap fallback keeps the sheet working without it.
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Shorten ``text`` with '..' until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def _thumbnail(data: bytes) -> Image.Image:
    """Fit one photo into a THUMB x THUMB tile, keeping its aspect ratio."""
    tile = Image.new("RGB", (THUMB, THUMB), _TILE_BACKGROUND)
    try:
        with Image.open(io.BytesIO(data)) as image:
            # contain() also enlarges small photos, so every tile reads at the same scale.
            image = ImageOps.contain(image.convert("RGB"), (THUMB, THUMB))
    except (OSError, ValueError, SyntaxError):
        ImageDraw.Draw(tile).text((8, THUMB // 2 - 6), "cannot decode", fill=(255, 120, 120), font=_font(11))
        return tile
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return tile


def _write_sheet(
    summary: DataSummary,
    rows: Sequence[tuple[int, str]],
    samples: dict[int, list[_Sample]],
    per_class: int,
    path: str,
) -> None:
    """Draw one row per class: its name and count, then up to ``per_class`` captioned thumbnails."""
    import tensorflow as tf

    sheet = Image.new("RGB", sheet_size(len(rows), per_class), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title_font, label_font, caption_font = _font(16), _font(14), _font(11)
    title = f"{summary.data_dir}: {summary.total} photos in {len(summary.spans)} span(s)"
    draw.text((PAD, 6), _fit(draw, title, title_font, sheet.width - 2 * PAD), fill=(0, 0, 0), font=title_font)
    for r, (label, name) in enumerate(rows):
        top = TITLE_H + r * (THUMB + CAPTION_H + PAD)
        count = summary.classes.get(name, 0)
        share = 100.0 * count / summary.total if summary.total else 0.0
        draw.text((PAD, top + 4), name, fill=(0, 0, 0), font=label_font)
        draw.text((PAD, top + 24), f"{count} ({share:.0f}%)", fill=(80, 80, 80), font=caption_font)
        row_samples = samples.get(label, [])
        if not row_samples:
            draw.text((LABEL_W, top + THUMB // 2), "no photos", fill=(160, 0, 0), font=label_font)
        for c, sample in enumerate(row_samples):
            left = LABEL_W + c * (THUMB + PAD)
            sheet.paste(_thumbnail(sample.image), (left, top))
            caption = _fit(draw, f"lane {sample.lane_id}, {sample.device_id}", caption_font, THUMB)
            draw.text((left, top + THUMB + 2), caption, fill=(0, 0, 0), font=caption_font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    # Through gfile, so a gs:// data folder gets its sheet like a local one.
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-align the first column, right-align the others."""
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))]).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(row) for row in cells[1:])]


def _share_rows(counts: dict, total: int) -> list[tuple[object, int, str]]:
    return [(key, n, f"{100.0 * n / total:.1f}%") for key, n in counts.items()]


def format_summary(summary: DataSummary) -> str:
    """Readable tables of the counts, as ``shelf-audit inspect`` prints them."""
    total = summary.total
    out = [f"{total} photo(s) in {len(summary.files)} file(s) under {summary.data_dir}", ""]
    class_names = list(summary.classes)
    span_rows = [(s, n, *summary.span_classes[s].values()) for s, n in summary.spans.items()]
    span_rows.append(("total", total, *summary.classes.values()))
    out += _table(["span", "photos", *class_names], span_rows) + [""]
    out += _table(["class", "photos", "share"], _share_rows(summary.classes, total)) + [""]
    out += _table(["lane", "photos", "share"], _share_rows(summary.lanes, total)) + [""]
    out += _table(["device", "photos", "share"], _share_rows(summary.devices, total))
    if set(summary.lighting) != {_NO_LIGHTING}:
        out += [""] + _table(["lighting", "photos", "share"], _share_rows(summary.lighting, total))
    if summary.unreadable:
        out += ["", f"WARNING: {summary.unreadable} record(s) or file(s) could not be read (see the log)"]
    if summary.sheet_path:
        out += ["", f"contact sheet: {summary.sheet_path}"]
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``inspect`` arguments to ``parser``."""
    parser.add_argument("data_dir", metavar="DIR", help="root folder holding span-N/*.tfrecord[.gz]")
    parser.add_argument("--sheet", default=None, help=f"contact sheet PNG to write (default DIR/{SHEET_NAME})")
    parser.add_argument(
        "--per-class",
        type=int,
        default=DEFAULT_PER_CLASS,
        help=f"sample photos per class on the sheet; 0 draws none (default {DEFAULT_PER_CLASS})",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``shelf-audit inspect``; 0 on success, 1 when there are no records."""
    try:
        summary = inspect(args.data_dir, sheet_path=args.sheet, per_class=args.per_class)
    except (FileNotFoundError, ValueError) as err:
        logger.error("inspect: %s", err)
        return 1
    print(format_summary(summary))
    if summary.total == 0:
        logger.error("inspect: no readable records under %s", args.data_dir)
        return 1
    return 0
