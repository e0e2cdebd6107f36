"""``shelf-audit pack``: pack a folder of labelled photos into the data contract (:mod:`shelf_data.pack`)."""

from __future__ import annotations

import argparse
import logging

from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED
from shelf_data import pack as pack_lib

logger = logging.getLogger("shelf_data.pack")

# The exit status of each outcome of a pack.
EXIT_STATUS = {pack_lib.COMPLETE: EXIT_OK, pack_lib.PARTIAL: EXIT_SKIPPED, pack_lib.NOTHING: EXIT_ERROR}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``pack`` arguments to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "PHOTO_DIR holds ok/, misplaced/ and damaged/ (JPEG or PNG, any size >= 64x64,\n"
        "gray or RGB) and optionally metadata.csv with the columns file,lane_id,device_id\n"
        "(optional: captured_at, lighting); file is relative to PHOTO_DIR, e.g. ok/a.jpg.\n"
        "Unreadable, non-image or too small files, files outside the class folders and\n"
        "bad metadata rows are skipped and listed with the reason; the list is printed\n"
        "and written to OUT/pack-report-span-N.json. Hidden files are ignored.\n"
        "Every photo needs lane_id and device_id: from its metadata.csv row, else from\n"
        "--lane/--device. Copies of one photo are packed once; copies under two labels\n"
        "are all skipped.\n"
        "\n"
        "exit status:\n"
        "  0  every file was packed\n"
        "  4  some files were skipped (see the report), the others were packed\n"
        "  1  nothing could be packed, or PHOTO_DIR is missing or has no class folder"
    )
    parser.add_argument("photo_dir", metavar="PHOTO_DIR", help="folder with ok/, misplaced/, damaged/")
    parser.add_argument("--out", required=True, help="root folder; photos go to OUT/span-N/")
    parser.add_argument("--span", type=int, default=1, help="span number (default 1)")
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help=f"number of shard files (default: one per {pack_lib.PHOTOS_PER_SHARD} photos)",
    )
    parser.add_argument("--lane", type=int, default=None, help="lane_id for photos without a metadata.csv row")
    parser.add_argument("--device", default=None, help="device_id for photos without a metadata.csv row")


def run(args: argparse.Namespace) -> int:
    """Run ``shelf-audit pack``; return the exit status (0, 4 or 1)."""
    try:
        report = pack_lib.pack(
            args.photo_dir,
            args.out,
            span=args.span,
            num_shards=args.shards,
            lane_id=args.lane,
            device_id=args.device,
        )
    except (pack_lib.PackError, FileExistsError) as err:
        logger.error("pack: %s", err)
        return EXIT_ERROR
    print(report.format())
    if report.skipped:
        logger.warning("pack: skipped %d file(s); the list is in %s", len(report.skipped), report.report_path)
    if report.packed == 0:
        logger.error("pack: nothing could be packed from %s", args.photo_dir)
    else:
        logger.info(
            "pack: report written to %s (outside span-%d/, so it is never read as data)", report.report_path, args.span
        )
    return EXIT_STATUS[report.outcome]
