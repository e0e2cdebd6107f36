"""``shelf-audit report``: the self-contained HTML report of a run, or two runs/versions side by side.

Examples::

    shelf-audit report --home runs/demo                       # latest run -> runs/demo/reports/<run>/report.html
    shelf-audit report --home runs/demo --compare 20261125T135533Z-621d9d latest --out compare.html

Exit status: 0 written, 1 error (no such home, run or version: named on stderr).

See docs/report.md#the-run-report-reporthtml, also for what ``--compare`` does with a published version.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK
from shelf_tflite import variants as push_defaults

log = logging.getLogger("shelf_audit.report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``shelf-audit report``."""
    parser.add_argument("--home", default="runs/local", help="the run home (ML Metadata, pipeline_root, bucket)")
    parser.add_argument("--run", default="latest", help="run id, or latest (default)")
    parser.add_argument("--out", help="output HTML (default <home>/reports/<run id>/report.html, compare.html)")
    parser.add_argument("--config", help="the run's TOML config (pipeline name, shared MySQL ML Metadata)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two run ids or bucket versions, side by side")
    parser.add_argument("--bucket", help="model bucket for --compare versions (default <home>/bucket)")
    parser.add_argument("--model", default=push_defaults.MODEL_NAME, help="model name in the bucket")
    parser.add_argument(
        "--small-slice", type=int, default=50, help="slices with fewer photos are marked small (default 50)"
    )
    parser.add_argument("--gallery", type=int, default=24, help="misclassified photos to show (default 24)")


def _side(name: str, args: argparse.Namespace):
    """Resolve one side of ``--compare``: a run of the home, else a version of the bucket."""
    from bucket import versions
    from pipeline.report_inputs import RunNotFound, find_run
    from report.build import CompareSide
    from report.tfma_reader import load_evaluation

    run_error = None
    try:
        inputs = find_run(args.home, name, args.config)
        return CompareSide(name=f"run {inputs.run_id}", view=load_evaluation(inputs.evaluation_uri))
    except (RunNotFound, FileNotFoundError) as e:
        run_error = e
    bucket = args.bucket or os.path.join(os.path.abspath(args.home), "bucket")
    try:
        manifest = versions.read_manifest(bucket, args.model, name)
    except Exception as e:  # noqa: BLE001 - neither a run nor a version: say both
        raise LookupError(
            f"{name!r} is neither a run of {args.home} ({run_error}) nor a version in {bucket} ({e})"
        ) from e
    mlmd = (manifest.get("lineage") or {}).get("mlmd") or {}
    uri = mlmd.get("model_evaluation_uri") or (manifest.get("gate_metrics") or {}).get("source")
    label = f"version {name}"
    if uri:
        try:
            return CompareSide(name=label, view=load_evaluation(uri))
        except Exception as e:  # noqa: BLE001 - fall back to the manifest's numbers
            note = f"its evaluation {uri} cannot be read ({e}); overall metrics from its manifest only"
    else:
        note = "its manifest names no evaluation; overall metrics from its manifest only"
    return CompareSide(name=label, gate_metrics=manifest.get("gate_metrics"), note=note)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``shelf-audit report``."""
    if not getattr(args, "verbose", False):  # TFX and Beam log dozens of INFO lines on import
        for name in ("apache_beam", "absl"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from pipeline.report_inputs import RunNotFound, find_run, report_path
    from report import build

    try:
        if args.compare:
            a, b = (_side(name, args) for name in args.compare)
            out = args.out or "compare.html"
            text = build.build_compare_html(a, b, small_slice=args.small_slice)
            folder = os.path.dirname(os.path.abspath(out))
            os.makedirs(folder, exist_ok=True)
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            inputs = find_run(args.home, args.run, args.config)
            inputs.small_slice = args.small_slice
            inputs.gallery_count = args.gallery
            out = args.out or report_path(args.home, inputs.run_id or "run")
            build.write_report(inputs, out)
    except (RunNotFound, LookupError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"report: {os.path.abspath(out)}")
    return EXIT_OK
