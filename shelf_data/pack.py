"""Pack a folder of labelled photos into the data contract (the library behind ``shelf-audit pack``).

Input: ``PHOTO_DIR/ok/``, ``misplaced/``, ``damaged/`` (one folder per class, sub-folders walked) and an
optional ``metadata.csv``. Output: ``OUT/span-N/part-XXXXX-of-YYYYY.tfrecord.gz`` through
:class:`shelf_data.contract.ShardedWriter` and the report ``OUT/pack-report-span-N.json``, next to the
span folders. Every file is checked before it is packed and stored with its original bytes; one that fails
a check is skipped and listed with the reason, never dropped silently.

See docs/data-contract.md#packing-real-photos for the checks and the report.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from shelf_data import contract

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.csv"
REQUIRED_COLUMNS = ("file", "lane_id", "device_id")
OPTIONAL_COLUMNS = ("captured_at", "lighting")
FORMATS = ("JPEG", "PNG")
PHOTOS_PER_SHARD = 500

# What a pack achieved: every file packed, some skipped (the others packed), or nothing packed.
COMPLETE, PARTIAL, NOTHING = "complete", "partial", "nothing packed"


class PackError(ValueError):
    """The input cannot be packed at all (missing folder, bad metadata header, ...)."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """One file (or metadata row) that was not packed, and why."""

    path: str  # relative to PHOTO_DIR, or "metadata.csv line N"
    reason: str


@dataclasses.dataclass
class PackReport:
    """What :func:`pack` did: counts, shards, and every skipped file with its reason."""

    photo_dir: str
    out_dir: str
    span: int
    class_counts: dict[str, int]
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    shards: tuple[str, ...] = ()
    report_path: str | None = None

    @property
    def packed(self) -> int:
        """Number of photos written."""
        return sum(self.class_counts.values())

    @property
    def outcome(self) -> str:
        """:data:`COMPLETE` (every file packed), :data:`PARTIAL` (some skipped) or :data:`NOTHING`."""
        if self.packed == 0:
            return NOTHING
        return PARTIAL if self.skipped else COMPLETE

    def to_dict(self) -> dict:
        """JSON-ready form (what ``pack-report-span-N.json`` holds)."""
        return {
            "photo_dir": self.photo_dir,
            "out_dir": self.out_dir,
            "span": self.span,
            "span_dir": contract.span_dir(self.out_dir, self.span),
            "packed": self.packed,
            "class_counts": dict(self.class_counts),
            "shards": list(self.shards),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "ignored_hidden": list(self.ignored),
            "outcome": self.outcome,
        }

    def format(self) -> str:
        """Readable multi-line summary for the terminal."""
        counts = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
        lines = [f"packed {self.packed} photo(s) ({counts}) into {contract.span_dir(self.out_dir, self.span)}"]
        if self.shards:
            lines.append(f"  {len(self.shards)} shard(s): {self.shards[0]}{' ...' if len(self.shards) > 1 else ''}")
        if self.skipped:
            lines.append(f"SKIPPED {len(self.skipped)} file(s):")
            width = max(len(s.path) for s in self.skipped)
            lines.extend(f"  {s.path:<{width}}  {s.reason}" for s in self.skipped)
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} hidden file(s) (names starting with '.')")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Meta:
    lane_id: int
    device_id: str
    captured_at: int | None = None
    lighting: str | None = None


class BadPhoto(Exception):
    """A photo fails a check; the message is the reason shown to the user."""


def check_image(data: bytes) -> tuple[str, tuple[int, int], str]:
    """Check that ``data`` is a complete JPEG/PNG the pipeline can decode.

    Returns:
        ``(format, (width, height), mode)`` as Pillow reports them.

    Raises:
        BadPhoto: with a short reason when any check fails.
    """
    if not data:
        raise BadPhoto("empty file")
    fmt = "image"
    try:
        with warnings.catch_warnings():
            # Huge images only warn; the size check below is what matters here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format
                if fmt not in FORMATS:
                    raise BadPhoto(f"format {fmt} is not JPEG or PNG")
                # verify() checks structure (PNG chunk CRCs) but does not decode
                # pixels, and leaves the image unusable: reopen for a full load(),
                # which is what catches truncated JPEGs.
                image.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                size, mode = image.size, image.mode
    except UnidentifiedImageError:
        raise BadPhoto("not an image (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as err:
        raise BadPhoto(f"image too large: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadPhoto(f"cannot decode {fmt}: {err}") from None
    width, height = size
    if min(width, height) < contract.MIN_IMAGE_SIDE:
        raise BadPhoto(f"too small: {width}x{height} (both sides must be >= {contract.MIN_IMAGE_SIDE})")
    if mode in ("CMYK", "YCbCr") and fmt == "JPEG":
        # libjpeg in TensorFlow refuses CMYK -> grayscale ("Unsupported color
        # conversion request"), and the pipeline decodes to one channel.
        raise BadPhoto(f"{mode} JPEG: TensorFlow cannot decode it to grayscale; save it as RGB or gray")
    _check_tf_decodes(data)
    return fmt, size, mode


def _check_tf_decodes(data: bytes) -> None:
    """Decode with TensorFlow as the pipeline does: Pillow and libjpeg/libpng differ on edge cases."""
    import tensorflow as tf

    try:
        tf.io.decode_image(data, channels=1, expand_animations=False)
    except tf.errors.OpError as err:
        first = (err.message or str(err)).strip().splitlines()[0]
        raise BadPhoto(f"TensorFlow cannot decode it: {first}") from None


def _parse_captured_at(text: str) -> int:
    """Unix seconds, or an ISO 8601 time (naive times are taken as UTC)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"captured_at must be unix seconds or ISO 8601. Received captured_at={text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def _parse_row(row: dict[str, str]) -> _Meta:
    """Validate one metadata row; raise ValueError with the offending value."""
    lane_text = (row.get("lane_id") or "").strip()
    try:
        lane = int(lane_text)
    except ValueError:
        raise ValueError(f"lane_id must be an integer. Received lane_id={lane_text!r}") from None
    if not contract.LANE_MIN <= lane <= contract.LANE_MAX:
        raise ValueError(f"lane_id must be in {contract.LANE_MIN}..{contract.LANE_MAX}. Received lane_id={lane}")
    device = (row.get("device_id") or "").strip()
    if not device:
        raise ValueError("device_id is empty")
    captured_text = (row.get("captured_at") or "").strip()
    lighting = (row.get("lighting") or "").strip() or None
    return _Meta(lane, device, _parse_captured_at(captured_text) if captured_text else None, lighting)


def _normalise(file: str) -> str:
    """Metadata paths are relative to PHOTO_DIR with '/' separators; accept './' and Windows backslashes."""
    return posixpath.normpath(file.strip().replace("\\", "/")).lstrip("/")


@dataclasses.dataclass
class _Metadata:
    """Parsed ``metadata.csv``."""

    # file (relative, '/'-separated) -> its metadata, or why its row is invalid
    rows: dict[str, _Meta | str] = dataclasses.field(default_factory=dict)
    # rows that cannot be tied to a photo at all
    problems: list[Skipped] = dataclasses.field(default_factory=list)
    # (line number, file) of every row, to report rows that name no photo
    lines: list[tuple[int, str]] = dataclasses.field(default_factory=list)


def read_metadata(path: Path) -> _Metadata:
    """Read and check ``metadata.csv`` row by row.

    Raises:
        PackError: when the header lacks a required column.
    """
    meta = _Metadata()
    first_line: dict[str, int] = {}
    # utf-8-sig: spreadsheets often save CSV with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise PackError(
                f"{path} must have the columns {', '.join(REQUIRED_COLUMNS)} "
                f"(optional: {', '.join(OPTIONAL_COLUMNS)}). Received header={header}"
            )
        reader.fieldnames = header
        extra = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if extra:
            logger.warning("pack: %s: ignoring unknown column(s) %s", path.name, ", ".join(extra))
        for row in reader:
            line = reader.line_num
            file = _normalise(row.get("file") or "")
            if file in ("", "."):
                meta.problems.append(Skipped(f"{METADATA_FILE} line {line}", "row has no file name"))
                continue
            meta.lines.append((line, file))
            if file in first_line:
                # Two rows for one photo: neither wins silently.
                meta.rows[file] = f"{METADATA_FILE} has two rows for this file (lines {first_line[file]} and {line})"
                continue
            first_line[file] = line
            try:
                meta.rows[file] = _parse_row(row)
            except ValueError as err:
                meta.rows[file] = f"{METADATA_FILE} line {line}: {err}"
    return meta


def _walk_files(folder: Path, photo_dir: Path, ignored: list[str]) -> Iterator[str]:
    """Yield every file under ``folder`` (relative to ``photo_dir``) in sorted order.

    Hidden files and folders are not yielded; they are recorded in ``ignored``.
    """
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath).relative_to(photo_dir)
        ignored.extend((here / d).as_posix() + "/" for d in sorted(dirnames) if d.startswith("."))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                ignored.append((here / name).as_posix())
            else:
                yield (here / name).as_posix()


def _candidates(photo_dir: Path, skipped: list[Skipped], ignored: list[str]) -> list[tuple[str, int]]:
    """Return ``(relative path, label)`` of every file inside a class folder, sorted.

    Files elsewhere are appended to ``skipped`` with the reason.
    """
    found: list[tuple[str, int]] = []
    expected = ", ".join(f"{name}/" for name in contract.LABELS)
    for entry in sorted(photo_dir.iterdir()):
        if entry.name.startswith("."):
            ignored.append(entry.name + ("/" if entry.is_dir() else ""))
        elif entry.is_dir():
            label = contract.LABELS.index(entry.name) if entry.name in contract.LABELS else None
            for rel in _walk_files(entry, photo_dir, ignored):
                if label is None:
                    skipped.append(Skipped(rel, f"folder {entry.name}/ is not a class folder ({expected})"))
                else:
                    found.append((rel, label))
        elif entry.name != METADATA_FILE:
            skipped.append(Skipped(entry.name, f"not inside a class folder ({expected})"))
    return found


def _duplicates(photo_dir: Path, candidates: list[tuple[str, int]]) -> dict[str, str]:
    """Find copies of one photo; return ``{relative path: reason}`` for each copy to skip.

    Copies under one label keep the first (sorted) and skip the others. Copies
    under different labels are all skipped: nobody can tell which label is
    right, and keeping either would put the same photo in two classes.
    """
    by_digest: dict[str, list[tuple[str, int]]] = {}
    for rel, label in candidates:
        digest = hashlib.sha256((photo_dir / rel).read_bytes()).hexdigest()
        by_digest.setdefault(digest, []).append((rel, label))
    reasons: dict[str, str] = {}
    for copies in by_digest.values():
        if len(copies) < 2:
            continue
        if len({label for _, label in copies}) > 1:
            for rel, _ in copies:
                others = ", ".join(o for o, _ in copies if o != rel)
                reasons[rel] = f"same photo as {others} under another label (conflicting labels)"
        else:
            first = copies[0][0]
            for rel, _ in copies[1:]:
                reasons[rel] = f"same photo as {first} (duplicate)"
    return reasons


def _natural_key(item: Skipped) -> list[int | str]:
    """Sort "metadata.csv line 9" before "line 10", and photos by path."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", item.path)]


def default_num_shards(count: int) -> int:
    """About one shard per :data:`PHOTOS_PER_SHARD` photos, at least one."""
    return max(1, math.ceil(count / PHOTOS_PER_SHARD))


def pack(
    photo_dir: str,
    out_dir: str,
    span: int = 1,
    num_shards: int | None = None,
    lane_id: int | None = None,
    device_id: str | None = None,
    write_report: bool = True,
) -> PackReport:
    """Pack ``photo_dir`` into ``<out_dir>/span-<span>/part-*.tfrecord.gz``.

    Args:
        photo_dir: local folder with ``ok/``, ``misplaced/``, ``damaged/`` and
            an optional ``metadata.csv``.
        out_dir: root of the input bucket (local path or ``tf.io.gfile`` URL).
        span: span number; its folder must not hold shards yet.
        num_shards: shard files to write (default :func:`default_num_shards`).
        lane_id: lane for photos without a metadata row.
        device_id: device for photos without a metadata row.
        write_report: also write ``<out_dir>/pack-report-span-<span>.json``.

    Returns:
        A :class:`PackReport`; its ``exit_status`` says whether files were skipped.

    Raises:
        PackError: when ``photo_dir`` is missing or has no class folder, when
            ``metadata.csv`` has a bad header, when photos would have no lane
            or device, or when the span already holds shards.
    """
    import tensorflow as tf

    root = Path(photo_dir)
    if not root.is_dir():
        raise PackError(f"photo folder not found. Received photo_dir={photo_dir!r}")
    if not any((root / name).is_dir() for name in contract.LABELS):
        raise PackError(
            f"{photo_dir} has none of the class folders {', '.join(n + '/' for n in contract.LABELS)}; "
            "put each photo in the folder of its label"
        )
    if span < 0:
        raise PackError(f"span must be >= 0. Received span={span}")
    if num_shards is not None and num_shards < 1:
        raise PackError(f"num_shards must be >= 1. Received num_shards={num_shards}")
    if lane_id is not None and not contract.LANE_MIN <= lane_id <= contract.LANE_MAX:
        raise PackError(f"--lane must be in {contract.LANE_MIN}..{contract.LANE_MAX}. Received lane_id={lane_id}")
    if device_id is not None and not device_id.strip():
        raise PackError("--device must not be empty")
    has_default = lane_id is not None and device_id is not None
    metadata_path = root / METADATA_FILE
    if not metadata_path.is_file() and not has_default:
        # Lane and device are required by the contract; inventing them would
        # poison the per-lane and per-device slices, so ask instead.
        raise PackError(f"{photo_dir} has no {METADATA_FILE}: give --lane and --device for its photos")
    target = contract.span_dir(out_dir, span)
    existing = tf.io.gfile.glob(os.path.join(target, "*" + contract.SHARD_SUFFIX))
    if existing:
        raise PackError(f"{target} already holds {len(existing)} shard(s); choose another --span or --out")

    skipped: list[Skipped] = []
    ignored: list[str] = []
    metadata = read_metadata(metadata_path) if metadata_path.is_file() else _Metadata()
    skipped.extend(metadata.problems)
    candidates = _candidates(root, skipped, ignored)
    present = {rel for rel, _ in candidates}
    for line, file in metadata.lines:
        if file not in present:
            skipped.append(Skipped(f"{METADATA_FILE} line {line}", f"names no photo in a class folder: {file!r}"))
    default = _Meta(lane_id, device_id.strip()) if lane_id is not None and device_id is not None else None

    counts = dict.fromkeys(contract.LABELS, 0)
    duplicates = _duplicates(root, candidates)
    shards = num_shards if num_shards is not None else default_num_shards(len(candidates))
    writer: contract.ShardedWriter | None = None
    with contextlib.ExitStack() as stack:
        for rel, label in candidates:
            meta = metadata.rows.get(rel, default)
            if meta is None:
                skipped.append(Skipped(rel, f"no row in {METADATA_FILE} and no --lane/--device default"))
                continue
            if isinstance(meta, str):
                skipped.append(Skipped(rel, meta))
                continue
            if rel in duplicates:
                skipped.append(Skipped(rel, duplicates[rel]))
                continue
            data = (root / rel).read_bytes()
            try:
                check_image(data)
            except BadPhoto as err:
                skipped.append(Skipped(rel, str(err)))
                continue
            if writer is None:
                # Opened lazily: a folder with nothing valid leaves no empty span
                # behind. The stack closes it (renaming the shards) on success and
                # removes the temporary files on an exception.
                writer = stack.enter_context(contract.ShardedWriter(out_dir, span, shards))
            writer.write(
                contract.PhotoRecord(
                    image=data,
                    label=label,
                    lane_id=meta.lane_id,
                    device_id=meta.device_id,
                    captured_at=meta.captured_at,
                    lighting=meta.lighting,
                )
            )
            counts[contract.LABELS[label]] += 1

    report = PackReport(
        photo_dir=str(photo_dir),
        out_dir=str(out_dir),
        span=span,
        class_counts=counts,
        skipped=sorted(skipped, key=_natural_key),
        ignored=sorted(ignored),
        shards=tuple(writer.paths) if writer is not None else (),
    )
    if write_report:
        report.report_path = os.path.join(out_dir, f"pack-report-span-{span}.json")
        tf.io.gfile.makedirs(out_dir)
        with tf.io.gfile.GFile(report.report_path, "w") as handle:
            handle.write(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
