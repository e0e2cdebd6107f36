"""``shelf-audit models``: list, show, verify, roll back or clean models in a bucket; sign; trace a version.

Examples::

    shelf-audit models list --bucket gs://acme-models
    shelf-audit models verify --bucket gs://acme-models --public-key release.pub.pem   # LATEST
    shelf-audit models lineage --bucket runs/demo/bucket --home runs/demo 20261125T120102Z-3fa9c1

Exit status: 0 ok, 1 error (the failing file or version is named on stderr).

See docs/running.md#command-line and docs/bucket-contract.md for each subcommand.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from typing import Any

from bucket import history, layout, publish, signing, storage, versions
from bucket import verify as bucket_verify
from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK
from shelf_tflite import variants as push_defaults


def _root(bucket: str, model: str) -> str:
    return layout.model_root(bucket, model)


def read_latest(bucket: str, model: str) -> str | None:
    """The version ``LATEST`` names, or None."""
    return versions.read_latest(bucket, model)


def list_versions(bucket: str, model: str) -> list[str]:
    """Complete versions (with a manifest), oldest first."""
    return versions.list_versions(bucket, model)


def read_manifest(bucket: str, model: str, version: str | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: LATEST).

    Raises:
        BucketError: nothing published, no complete version of that name, or unreadable.
    """
    return versions.read_manifest(bucket, model, version)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the actions list, show, verify, rollback, clean, keygen and lineage."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", required=True, help="bucket root: local folder, gs://..., s3://... or memory://...")
    common.add_argument(
        "--model", default=push_defaults.MODEL_NAME, help="model folder in the bucket (default: %(default)s)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser(
        "list", parents=[common], help="versions: time, default variant, size, gate metrics, signature, LATEST"
    )
    show = actions.add_parser("show", parents=[common], help="print one manifest")
    show.add_argument("version", nargs="?", help="default: LATEST")
    verify = actions.add_parser("verify", parents=[common], help="signature, checksums, and each model loads and runs")
    verify.add_argument("version", nargs="?", help="default: LATEST")
    verify.add_argument("--version", dest="version_flag", metavar="VERSION", help="the same as the positional VERSION")
    verify.add_argument("--no-run", action="store_true", help="signature and checksums only, do not run the models")
    verify.add_argument(
        "--public-key",
        help="the release public key (PEM) the signature must verify against; without it, the manifest's own key "
        "is used, which proves integrity but not origin",
    )
    rollback = actions.add_parser("rollback", parents=[common], help="move LATEST to another version")
    rollback.add_argument("version", nargs="?", help="default: the newest version older than LATEST")
    rollback.add_argument("--reason", default="", help="why, recorded in the history event")
    clean = actions.add_parser(
        "clean",
        parents=[common],
        help="remove leftovers of interrupted publishes (staging, temporary files, versions without a manifest) "
        "older than --grace-minutes, and re-derive LATEST from the history",
    )
    clean.add_argument(
        "--grace-minutes", type=float, default=publish.CLEAN_GRACE_SECONDS / 60, help="default %(default)s"
    )
    keygen = actions.add_parser("keygen", help="write a new Ed25519 signing key (mode 0600) and print its public key")
    keygen.add_argument("--out", required=True, help="private key file to create (PEM); never inside the repository")
    keygen.add_argument("--public-out", help="public key file (PEM); default: <out>.pub")
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


def _row(version: str, manifest: dict[str, Any], latest: str | None) -> list[str]:
    variant = manifest.get("default_variant")
    entry = manifest.get("variants", {}).get(variant, {})
    gate = manifest.get("gate_metrics", {})
    overall = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(gate.get("overall", {}).items()))
    per_class = ", ".join(
        f"{label}.{k}={_fmt(v)}"
        for label, metrics in sorted(gate.get("per_class", {}).items())
        for k, v in metrics.items()
    )
    signed = "signed" if manifest.get("signing") else "unsigned"
    return [
        "*" if version == latest else "",
        version,
        str(manifest.get("created", "-")),
        _fmt(variant),
        _fmt(entry.get("bytes")),
        _fmt(entry.get("latency_ms"), 2),
        signed,
        "; ".join(p for p in (overall, per_class) if p) or "-",
    ]


def _list(args: argparse.Namespace) -> int:
    if not storage.bucket_exists(args.bucket):
        print(f"error: bucket {args.bucket} does not exist (or is not a folder)", file=sys.stderr)
        return EXIT_ERROR
    root = _root(args.bucket, args.model)
    folders = versions.version_folders(args.bucket, args.model)
    latest = read_latest(args.bucket, args.model)
    if not folders and latest is None:
        print(f"no versions under {root}")
        return EXIT_OK
    rows = [["", "version", "created", "variant", "bytes", "latency_ms", "signature", "gate metrics"]]
    good: set[str] = set()
    broken = 0
    for version in folders:
        mark = "*" if version == latest else ""
        if not versions.is_complete(args.bucket, args.model, version):
            rows.append([mark, version, "-", "-", "-", "-", "-", "incomplete: no manifest.json (in flight or killed)"])
            continue
        try:
            manifest = read_manifest(args.bucket, args.model, version)
        except layout.BucketError as error:
            broken += 1
            reason = str(error).removeprefix(f"version {version}: ")
            rows.append([mark, version, "-", "-", "-", "-", "-", f"broken: {reason}"])
            print(f"error: version {version} is broken: {reason}", file=sys.stderr)
            continue
        good.add(version)
        rows.append(_row(version, manifest, latest))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    print(f"(* = LATEST: {latest})")
    status = EXIT_ERROR if broken else EXIT_OK
    if latest is not None and latest not in good:
        print(f"error: LATEST of {root} names {latest}, which is not a complete, readable version", file=sys.stderr)
        status = EXIT_ERROR
    expected = history.latest_from_events(history.read_history(args.bucket, args.model))
    if expected is not None and expected != latest:
        print(
            f"warning: LATEST names {latest} but the history makes {expected} current (a publish or rollback in "
            "flight, or one that was killed: `shelf-audit models clean` settles it)",
            file=sys.stderr,
        )
    return status


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
    print(lineage.format_chain(chain, layout.version_dir(args.bucket, args.model, version)))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    if args.version and args.version_flag and args.version != args.version_flag:
        print(f"error: two versions given: {args.version} and --version {args.version_flag}", file=sys.stderr)
        return EXIT_ERROR
    pinned = None
    if args.public_key:
        with open(args.public_key, "rb") as f:
            pinned = signing.load_public_key(f.read())
    result = bucket_verify.verify_version(
        args.bucket, args.model, args.version or args.version_flag, run_models=not args.no_run, public_key=pinned
    )
    for warning in result.warnings:
        print(f"warning {result.version}: {warning}", file=sys.stderr)
    for problem in result.problems:
        print(f"FAILED {result.version}: {problem}", file=sys.stderr)
    if not result.ok:
        return EXIT_ERROR
    what = "checksums" if args.no_run else "checksums, models load and replay golden samples"
    print(f"ok {result.version}: {result.signature}; {len(result.checked)} files ({what})")
    return EXIT_OK


def _clean(args: argparse.Namespace) -> int:
    if not storage.bucket_exists(args.bucket):
        print(f"error: bucket {args.bucket} does not exist (or is not a folder)", file=sys.stderr)
        return EXIT_ERROR
    removed = publish.clean(args.bucket, args.model, grace_seconds=args.grace_minutes * 60)
    for path in removed:
        print(f"removed {path}")
    latest = history.settle_latest(args.bucket, args.model)
    print(f"{len(removed)} leftover(s) removed; LATEST: {latest}")
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    public_out = args.public_out or f"{args.out}.pub"
    private, public = signing.generate_private_key_pem()
    try:  # O_EXCL: never overwrite a key; 0600 from the start, not chmod after
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {args.out} exists; not overwritten", file=sys.stderr)
        return EXIT_ERROR
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(public_out, "wb") as f:
        f.write(public)
    print(f"private key: {args.out} (mode 0600; keep it out of the repository and the bucket)")
    print(f"public key: {public_out}, fingerprint {signing.fingerprint(signing.load_public_key(public))}")
    print(public.decode("ascii"), end="")
    raw = base64.b64encode(signing.load_public_key(public)).decode("ascii")
    print(f"raw public key (base64, to pin in the app): {raw}")
    print(f'configure: [push] signing_key = "file:{os.path.abspath(args.out)}" (or env:VARIABLE holding the PEM)')
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    target = args.version
    if target is None:
        latest = versions.read_latest(args.bucket, args.model)
        older = [v for v in versions.list_versions(args.bucket, args.model) if latest is None or v < latest]
        if not older:
            print(f"no version older than LATEST ({latest}) to roll back to", file=sys.stderr)
            return EXIT_ERROR
        target = older[-1]
    previous = publish.rollback(args.bucket, args.model, target, reason=args.reason)
    print(f"LATEST: {previous} -> {target}")
    return EXIT_OK


def _bucket_error(error: Exception) -> bool:
    return isinstance(error, (layout.BucketError, signing.SigningError, ValueError, OSError))


def run(args: argparse.Namespace) -> int:
    """Run one ``models`` action; bucket errors become exit status 1 with a message."""
    handlers = {
        "list": _list,
        "show": _show,
        "verify": _verify,
        "rollback": _rollback,
        "clean": _clean,
        "keygen": _keygen,
        "lineage": _lineage,
    }
    try:
        return handlers[args.action](args)
    except Exception as error:
        if not _bucket_error(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
