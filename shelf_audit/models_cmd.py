"""``shelf-audit models``: list, show, verify or roll back models in a bucket; trace a version to its spans.

Examples::

    shelf-audit models list --bucket gs://acme-models
    shelf-audit models show --bucket gs://acme-models 20261125T120102Z-3fa9c1
    shelf-audit models verify --bucket gs://acme-models          # LATEST
    shelf-audit models rollback --bucket gs://acme-models         # the version before LATEST
    shelf-audit models lineage --bucket runs/demo/bucket --home runs/demo 20261125T120102Z-3fa9c1

``list``, ``show`` and ``lineage`` only read JSON: on a local bucket they do
not import TensorFlow (``gs://`` and ``ram://`` go through
:mod:`components.model_bucket`, which needs it). ``lineage`` walks ML
Metadata (:mod:`pipeline.lineage`) and, when the store cannot be reached,
prints the chain the manifest records and says so on stderr.

Exit status: 0 ok, 1 error (missing version, failed verification: the
failing file is named on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from components import variants as push_defaults

EXIT_OK = 0
EXIT_ERROR = 1

# The bucket layout of components/model_bucket.py (README, "Bucket contract"), read here
# without TensorFlow for local buckets.
_LATEST, _VERSIONS, _MANIFEST = "LATEST", "versions", "manifest.json"


class BucketReadError(RuntimeError):
    """A local bucket lacks the version asked for (same messages as ``model_bucket.BucketError``)."""


def _local(bucket: str) -> bool:
    return "://" not in bucket


def _root(bucket: str, model: str) -> str:
    if not model or "/" in model or model.startswith("."):
        raise ValueError(f"model_name must be a plain folder name. Received model_name={model!r}")
    return os.path.join(bucket.rstrip("/"), model)


def read_latest(bucket: str, model: str) -> str | None:
    """The version ``LATEST`` names, or None (plain file read for a local bucket)."""
    if not _local(bucket):
        from components import model_bucket as mb

        return mb.read_latest(bucket, model)
    path = os.path.join(_root(bucket, model), _LATEST)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip() or None


def list_versions(bucket: str, model: str) -> list[str]:
    """Complete versions (with a manifest), oldest first."""
    if not _local(bucket):
        from components import model_bucket as mb

        return mb.list_versions(bucket, model)
    folder = os.path.join(_root(bucket, model), _VERSIONS)
    if not os.path.isdir(folder):
        return []
    return [v for v in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, v, _MANIFEST))]


def read_manifest(bucket: str, model: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: LATEST).

    Raises:
        BucketReadError: nothing published, or no complete version of that name.
    """
    if not _local(bucket):
        from components import model_bucket as mb

        return mb.read_manifest(bucket, model, version)
    version = version or read_latest(bucket, model)
    if version is None:
        raise BucketReadError(f"nothing published under {_root(bucket, model)}")
    path = os.path.join(_root(bucket, model), _VERSIONS, version, _MANIFEST)
    if not os.path.isfile(path):
        raise BucketReadError(f"no complete version {version!r} under {_root(bucket, model)}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the actions list, show, verify, rollback and lineage, each with ``--bucket`` and ``--model``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", required=True, help="bucket root: local folder, gs://... or ram://...")
    common.add_argument(
        "--model", default=push_defaults.MODEL_NAME, help="model folder in the bucket (default: %(default)s)"
    )
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
    lineage = actions.add_parser(
        "lineage", parents=[common], help="version -> run -> model -> examples -> ExampleGen -> spans (ML Metadata)"
    )
    lineage.add_argument("version", nargs="?", help="default: LATEST")
    lineage.add_argument("--home", help="the home of the run that published it: ML Metadata in <home>/metadata.sqlite")
    lineage.add_argument(
        "--config", help="a run config whose [metadata] section names the store (a SQLite path or a MySQL server)"
    )


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _list(args: argparse.Namespace) -> int:
    versions = list_versions(args.bucket, args.model)
    if not versions:
        print(f"no versions under {_root(args.bucket, args.model)}")
        return EXIT_OK
    latest = read_latest(args.bucket, args.model)
    rows = [["", "version", "created", "variant", "bytes", "latency_ms", "gate metrics"]]
    for version in versions:
        manifest = read_manifest(args.bucket, args.model, version)
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
    print(json.dumps(read_manifest(args.bucket, args.model, args.version), indent=2, sort_keys=True))
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> tuple[Any, str]:
    """``(store, description)`` of the ML Metadata named by ``--config``'s ``[metadata]`` or ``--home``.

    SQLite is opened read-only with ``ml_metadata`` alone; a MySQL store goes
    through :mod:`pipeline.metadata_store` (password from the environment).

    Raises:
        LookupError: neither ``--home`` nor ``--config`` names a store.
        Exception: the store cannot be opened (missing file, bad config, server down).
    """
    from pipeline import lineage

    metadata = None
    if args.config:
        from pipeline import config as config_lib

        metadata = config_lib.load(args.config).metadata
    if metadata is not None and metadata.kind == "mysql":
        from pipeline import metadata_store

        home = args.home or "."
        connection = metadata_store.connection_config(
            metadata, home, metadata_store.password_from_env(metadata, os.environ)
        )
        return metadata_store.open_store(connection), metadata_store.describe(metadata, home)
    if metadata is not None and metadata.path:
        path = os.path.abspath(metadata.path)  # as pipeline.metadata_store.sqlite_path
    elif args.home:
        path = os.path.abspath(os.path.join(args.home, "metadata.sqlite"))
    else:
        raise LookupError("no ML Metadata store given (--home, or --config with a [metadata] section)")
    return lineage.open_sqlite(path), path


def _lineage(args: argparse.Namespace) -> int:
    from pipeline import lineage

    logging.getLogger("absl").setLevel(logging.WARNING)  # ML Metadata's "store initialized" INFO line
    version = args.version or read_latest(args.bucket, args.model)
    manifest = read_manifest(args.bucket, args.model, version)
    version = manifest.get("version") or version
    try:
        store, where = _open_store(args)
        chain = lineage.from_store(store, version, manifest, where)
    except Exception as error:  # noqa: BLE001 - any store problem: fall back to the manifest, and say why.
        print(f"ML Metadata not used ({error}); the chain below is the manifest's record alone", file=sys.stderr)
        chain = lineage.from_manifest(version, manifest)
    print(lineage.format_chain(chain, os.path.join(_root(args.bucket, args.model), _VERSIONS, version)))
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


def _bucket_error(error: Exception) -> bool:
    # model_bucket (and TensorFlow with it) is only imported by the actions that need it.
    mb = sys.modules.get("components.model_bucket")
    return isinstance(error, (BucketReadError, ValueError, OSError)) or (
        mb is not None and isinstance(error, mb.BucketError)
    )


def run(args: argparse.Namespace) -> int:
    """Run one ``models`` action; bucket errors become exit status 1 with a message."""
    handlers = {"list": _list, "show": _show, "verify": _verify, "rollback": _rollback, "lineage": _lineage}
    try:
        return handlers[args.action](args)
    except Exception as error:
        if not _bucket_error(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
