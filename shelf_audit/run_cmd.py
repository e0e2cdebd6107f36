"""``shelf-audit run``: the pipeline on one machine (LocalDagRunner, Beam DirectRunner, SQLite ML Metadata).

Layout under ``--home``: ``pipeline_root/`` (artifacts), ``metadata.sqlite``
(ML Metadata) and ``bucket/`` (published models, unless the config names a
bucket). Exit status: 0 blessed, 3 completed but not blessed (or not
published), 1 error (see :mod:`shelf_audit.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time

from pipeline import config as config_lib
from shelf_audit.cli import EXIT_ERROR, EXIT_NOT_BLESSED, EXIT_OK

log = logging.getLogger("shelf_audit.run")

DEFAULT_CONFIG = "configs/demo.toml"

# absl lines worth showing without --verbose: one per stage start/finish.
_STAGE_MARKERS = ("Component ", "A cached execution")
# Warnings TFX 1.16 prints on every run that say nothing about this run.
_NOISE = ("ArtifactQuery.property_predicate is not supported", "Examples artifact does not have payload_format")


class _StageFilter(logging.Filter):
    """Keep TFX's (absl's) stage lines and warnings; drop its per-execution detail."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(_NOISE):
            return False
        if record.name != "absl":  # our own loggers (stage summary, training progress) always pass
            return True
        return record.levelno >= logging.WARNING or message.startswith(_STAGE_MARKERS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``shelf-audit run``."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"TOML config (default {DEFAULT_CONFIG})")
    parser.add_argument("--data", help="input base holding span-N/*.tfrecord.gz (overrides data.input_base)")
    parser.add_argument("--home", default="runs/local", help="pipeline root, ML Metadata and default bucket")
    parser.add_argument("--bucket", help="model bucket (overrides push.bucket; default <home>/bucket)")
    parser.add_argument("--span", type=int, help="use this span only (default: the latest)")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--weights", help="override training.weights: none, imagenet or a .h5 path")
    parser.add_argument("--recall-floor", type=float, help="override gate.weighted_recall_floor")


def resolve_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Load the config file and apply the command-line overrides (validated)."""
    config = config_lib.load(args.config)
    data, training, gate, push = config.data, config.training, config.gate, config.push
    if args.data:
        data = dataclasses.replace(data, input_base=args.data)
    if args.span is not None:
        data = dataclasses.replace(data, span_from=args.span, span_to=args.span)
    if args.epochs is not None:
        training = dataclasses.replace(training, epochs=args.epochs)
    if args.weights:
        training = dataclasses.replace(training, weights=args.weights)
    if args.recall_floor is not None:
        gate = dataclasses.replace(gate, weighted_recall_floor=args.recall_floor)
    if args.bucket:
        push = dataclasses.replace(push, bucket=args.bucket)
    return config.replace(data=data, training=training, gate=gate, push=push)


def git_revision() -> str:
    """The checkout's commit (with ``-dirty`` when it has changes), or "" outside git."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return rev + ("-dirty" if dirty.strip() else "")


def run_pipeline(config: config_lib.PipelineConfig, home: str) -> int:
    """Run the pipeline under ``home``; print the summary; return the exit status."""
    from pipeline import local_runner, run_summary
    from pipeline.pipeline import gate_eval_config

    data_root = os.path.abspath(config.data.input_base)
    if not os.path.isdir(data_root):
        log.error("input base %s does not exist (make data with `shelf-audit synth --out %s`)", data_root, data_root)
        return EXIT_ERROR
    paths = local_runner.LocalPaths(os.path.abspath(home))
    log.info("running %s on %s; home %s; ML Metadata %s", config.name, data_root, paths.home, paths.metadata)
    started = time.time()
    try:
        connection = local_runner.run(config, home, source_revision=git_revision())
    except Exception as e:  # noqa: BLE001 - any stage failure ends the run with its message.
        log.error("run failed after %.0fs: %s", time.time() - started, e)
        return EXIT_ERROR
    summary = run_summary.summarize(connection, config.name, gate_eval_config(config.gate))
    print(run_summary.format_summary(summary), flush=True)
    if not summary.blessed:
        return EXIT_NOT_BLESSED
    if summary.pushed is not None and not summary.pushed.get("pushed"):
        return EXIT_NOT_BLESSED
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Entry point of ``shelf-audit run``."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    if not args.verbose:
        for handler in logging.getLogger().handlers + [absl_logging.get_absl_handler()]:
            handler.addFilter(_StageFilter())
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        config = resolve_config(args)
    except config_lib.ConfigError as e:
        print(f"error: invalid config: {e}", file=sys.stderr)
        return EXIT_ERROR
    return run_pipeline(config, args.home)
