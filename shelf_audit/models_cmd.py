"""``shelf-audit models``: list, show, verify or roll back models in a bucket.

Examples::

    shelf-audit models list --bucket gs://acme-models
    shelf-audit models show --bucket gs://acme-models 20261125T120102Z-3fa9c1
    shelf-audit models verify --bucket gs://acme-models          # LATEST
    shelf-audit models rollback --bucket gs://acme-models         # the version before LATEST

Exit status: 0 ok, 1 error (missing version, failed verification: the
failing file is named on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the actions ``list``, ``show``, ``verify``, ``rollback``, each with ``--bucket`` and ``--model``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", required=True, help="bucket root: local folder, gs://... or ram://...")
    common.add_argument("--model", default="shelf_audit", help="model folder in the bucket (default: %(default)s)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", parents=[common], help="versions: time, default variant, size, gate metrics, LATEST")
    show = actions.add_parser("show", parents=[common], help="print one manifest")
    show.add_argument("version", nargs="?", help="default: LATEST")
    verify = actions.add_parser("verify", parents=[common], help="checksums, and each model loads and runs")
    verify.add_argument("version", nargs="?", help="default: LATEST")
    verify.add_argument("--no-run", action="store_true", help="checksums only, do not run the models")
    rollback = actions.add_parser("rollback", parents=[common], help="move LATEST to another version")
    rollback.add_argument("version", nargs="?", help="default: the newest version older than LATEST")
    rollback.add_argument("--reason", default="", help="why, recorded in history.jsonl")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _list(args: argparse.Namespace) -> int:
    from components import model_bucket as mb

    versions = mb.list_versions(args.bucket, args.model)
    if not versions:
        print(f"no versions under {mb.model_root(args.bucket, args.model)}")
        return EXIT_OK
    latest = mb.read_latest(args.bucket, args.model)
    rows = [["", "version", "created", "variant", "bytes", "latency_ms", "gate metrics"]]
    for version in versions:
        manifest = mb.read_manifest(args.bucket, args.model, version)
        variant = manifest.get("default_variant")
        entry = manifest.get("variants", {}).get(variant, {})
        gate = manifest.get("gate_metrics", {})
        overall = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(gate.get("overall", {}).items()))
        per_class = ", ".join(
            f"{label}.{k}={_fmt(v)}"
            for label, metrics in sorted(gate.get("per_class", {}).items())
            for k, v in metrics.items()
        )
        rows.append(
            [
                "*" if version == latest else "",
                version,
                manifest.get("created", "-"),
                _fmt(variant),
                _fmt(entry.get("bytes")),
                _fmt(entry.get("latency_ms"), 2),
                "; ".join(p for p in (overall, per_class) if p) or "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    print(f"(* = LATEST: {latest})")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from components import model_bucket as mb

    print(json.dumps(mb.read_manifest(args.bucket, args.model, args.version), indent=2, sort_keys=True))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from components import model_bucket as mb

    result = mb.verify_version(args.bucket, args.model, args.version, run_models=not args.no_run)
    for problem in result.problems:
        print(f"FAILED {result.version}: {problem}", file=sys.stderr)
    if not result.ok:
        return EXIT_ERROR
    what = "checksums" if args.no_run else "checksums, models load and replay golden samples"
    print(f"ok {result.version}: {len(result.checked)} files ({what})")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from components import model_bucket as mb

    target = args.version
    if target is None:
        latest = mb.read_latest(args.bucket, args.model)
        older = [v for v in mb.list_versions(args.bucket, args.model) if latest is None or v < latest]
        if not older:
            print(f"no version older than LATEST ({latest}) to roll back to", file=sys.stderr)
            return EXIT_ERROR
        target = older[-1]
    previous = mb.rollback(args.bucket, args.model, target, reason=args.reason)
    print(f"LATEST: {previous} -> {target}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run one ``models`` action; bucket errors become exit status 1 with a message."""
    from components import model_bucket as mb

    handlers = {"list": _list, "show": _show, "verify": _verify, "rollback": _rollback}
    try:
        return handlers[args.action](args)
    except (mb.BucketError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
