"""``shelf-audit run``: the pipeline on one machine (LocalDagRunner, Beam DirectRunner, SQLite/MySQL ML Metadata).

Layout under ``--home``: ``pipeline_root/`` (artifacts), ``metadata.sqlite``
(ML Metadata, unless the config's ``[metadata]`` names a shared MySQL server)
and ``bucket/`` (published models, unless the config names a bucket). Exit
status: 0 blessed, 3 completed but not blessed (or not published), 1 error, 75 the home is locked by another run (see
:mod:`shelf_audit.cli` and :mod:`shelf_audit.home_lock`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from pipeline import config as config_lib
from shelf_audit import home_lock
from shelf_audit.exit_codes import EXIT_BUSY, EXIT_ERROR, EXIT_NOT_BLESSED, EXIT_OK
from shelf_audit.heartbeat import StageHeartbeat

if TYPE_CHECKING:
    from pipeline.pipeline import RunInputs
    from shelf_data import window

log = logging.getLogger("shelf_audit.run")

DEFAULT_CONFIG = "configs/demo.toml"

# absl lines worth showing without --verbose: one per stage start/finish.
_STAGE_MARKERS = ("Component ", "A cached execution")
# Warnings TFX 1.16 prints on every run that say nothing about this run.
# compatibility shim: docs/design-decisions.md#compatibility-shims
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
    spans = parser.add_mutually_exclusive_group()
    spans.add_argument(
        "--spans", help="which spans: latest, last:K (the K newest) or A-B (inclusive); overrides data.spans"
    )
    spans.add_argument("--span", type=int, help="use this span only: the same as --spans N")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--weights", help="override training.weights: none, imagenet or a .h5 path")
    parser.add_argument("--recall-floor", type=float, help="override gate.weighted_recall_floor")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even when a published version already has this run's inputs digest (same spans, code and config)",
    )


def resolve_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """Load the config file and apply the command-line overrides (validated)."""
    config = config_lib.load(args.config)
    data, training, gate, push = config.data, config.training, config.gate, config.push
    if args.data:
        data = dataclasses.replace(data, input_base=args.data)
    if args.spans is not None:
        data = dataclasses.replace(data, spans=args.spans)
    elif args.span is not None:
        data = dataclasses.replace(data, spans=str(args.span))
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


def _redact_passwords_in_logs() -> None:
    """Blank MySQL passwords in every log line, --verbose included (TFX logs its connection config)."""
    from absl import logging as absl_logging

    from pipeline.metadata_store import RedactPasswords

    for handler in logging.getLogger().handlers + [absl_logging.get_absl_handler()]:
        if not any(isinstance(f, RedactPasswords) for f in handler.filters):
            handler.addFilter(RedactPasswords())


def nothing_new(config: config_lib.PipelineConfig, inputs: RunInputs) -> str | None:
    """``nothing new since <version> (spans ...)`` when a published version has this run's inputs digest, else None.

    The digest (:mod:`pipeline.inputs_digest`) covers the selected spans' input
    fingerprints, the code fingerprint and the config sections that change
    the model or the gate. When it cannot be computed or the bucket cannot be
    read, the reason is logged and the answer is None: the pipeline runs.
    """
    from pipeline import inputs_digest as digest_lib
    from pipeline.pipeline import inputs_digest

    try:
        digest = inputs_digest(config, inputs)
        found = digest_lib.find_published(str(inputs.bucket), config.push.model_name, digest.digest)
    except Exception as e:  # noqa: BLE001 - the check is an optimisation: on any doubt, run.
        log.warning("could not compare this run's inputs with the bucket (%s); running the pipeline", e)
        return None
    spans = ", ".join(str(s) for s in digest.span_numbers)
    if found is None:
        log.info("inputs digest %s (spans %s) is in no published version: running", digest.digest[:12], spans)
        return None
    log.info(
        "inputs digest %s (spans %s, code %s) is that of published version %s; use --force to run anyway",
        digest.digest[:12],
        spans,
        digest.code_fingerprint,
        found[0],
    )
    return f"nothing new since {found[0]} (spans {spans})"


def resolve_spans(config: config_lib.PipelineConfig, data_root: str) -> window.Resolution:
    """The run's span window under ``data_root``: resolved once, here, and passed on to every stage.

    Raises:
        ValueError: the selection cannot be read (no span, an empty span folder): ``cannot read the spans (...): ...``.
    """
    from shelf_data import spans as spans_lib
    from shelf_data import window

    try:
        return window.resolve(data_root, window.input_config(), spans_lib.parse(config.data.spans))
    except ValueError as e:
        raise ValueError(f"cannot read the spans ({config.data.spans}): {e}") from None


def bucket_problem(config: config_lib.PipelineConfig, home: str) -> str:
    """Why the run's model bucket cannot be written (``bucket <path> is not writable: ...``), or "".

    Probed with :func:`bucket.storage.probe_writable` (a small object written and deleted)
    before any stage runs, so a bad ``--bucket`` fails in seconds, not after training.
    """
    from bucket import layout, storage  # light: no TensorFlow for a local bucket

    # The default bucket of pipeline.local_runner.LocalPaths, without importing TFX for it.
    bucket = config.push.bucket or os.path.join(os.path.abspath(home), "bucket")
    try:
        storage.probe_writable(bucket)
    except layout.BucketError as e:
        return str(e)
    return ""


def stage_error_text(error: BaseException) -> str:
    """A failed stage's message for the log: ours first, without the Beam/TFX wrapping around it.

    Beam re-raises a DoFn's error with the worker traceback and the step name appended; a corrupt input
    file's error (:class:`components.example_gen.record_check.CorruptRecordFileError`) is then cut out of that text.
    """
    text = str(error)
    marker = "CorruptRecordFileError: "
    if marker in text:  # wrapped in another exception's text
        text = text[text.rindex(marker) + len(marker) :]
    elif type(error).__name__ != "CorruptRecordFileError":
        return text
    return text.splitlines()[0].split(" [while running")[0] + " (ExampleGen stopped: fix or remove the file)"


def run_pipeline(config: config_lib.PipelineConfig, home: str, force: bool = False) -> int:
    """Run the pipeline under ``home``; print the summary; return the exit status.

    Unless ``force``, a run whose inputs digest a published version already
    has prints ``nothing new since <version> (spans ...)``, publishes nothing
    and returns 0 without building the pipeline.
    """
    from components import heap

    with heap.frozen_after_imports():  # TensorFlow, TFX, Beam, TFMA: ~8 full collections otherwise
        from pipeline import local_runner, metadata_store, run_summary
        from pipeline.pipeline import gate_eval_config, run_inputs, split_settings
        from shelf_audit import preflight

        # What later stages import when they start, imported now: a library this machine lacks stops the run here.
        missing = preflight.problems()
    if missing:
        for line in missing:
            log.error("set-up: %s", line)
        log.error("set-up: nothing was run; fix the environment (`make env` runs the same check)")
        return EXIT_ERROR

    data_root = os.path.abspath(config.data.input_base)
    if not os.path.isdir(data_root):
        log.error("input base %s does not exist (make data with `shelf-audit synth --out %s`)", data_root, data_root)
        return EXIT_ERROR
    _redact_passwords_in_logs()
    try:  # the one place the MySQL password is read: from the variable metadata.password_env names
        password = metadata_store.password_from_env(config.metadata, os.environ)
    except metadata_store.MetadataStoreError as e:
        log.error("%s", e)
        return EXIT_ERROR
    problem = bucket_problem(config, home)
    if problem:  # an unwritable bucket: said before any stage runs (after the checks that create nothing)
        log.error("%s", problem)
        return EXIT_ERROR
    if config.metadata.kind == "mysql":  # a wrong host or password is named first, before the data is read
        log.info("opening ML Metadata %s", metadata_store.describe(config.metadata, os.path.abspath(home)))
        try:
            connection = metadata_store.connection_config(config.metadata, os.path.abspath(home), password)
            metadata_store.open_store(connection)
        except metadata_store.MetadataStoreError as e:
            log.error("%s", e)
            return EXIT_ERROR
    try:  # an empty or missing span: said before anything is built (and before "nothing new")
        resolution = resolve_spans(config, data_root)
    except ValueError as e:
        log.error("%s", e)
        return EXIT_ERROR
    paths = local_runner.LocalPaths(os.path.abspath(home))
    inputs = run_inputs(config, data_root, config.push.bucket or paths.bucket, resolution)
    if not force:
        since = nothing_new(config, inputs)
        if since:
            print(since, flush=True)
            return EXIT_OK
    store = metadata_store.describe(config.metadata, paths.home)
    log.info("running %s on %s; home %s; ML Metadata %s", config.name, data_root, paths.home, store)
    started = time.time()
    run_id = local_runner.new_run_id()
    heartbeat = StageHeartbeat().start()  # "<stage> still running, m:ss elapsed" every 30 s of a long stage
    try:
        connection = local_runner.run(
            config, home, source_revision=git_revision(), metadata_password=password, run_id=run_id, inputs=inputs
        )
    except Exception as e:  # noqa: BLE001 - any stage failure ends the run with its message.
        log.error("run failed after %.0fs: %s", time.time() - started, stage_error_text(e))
        return EXIT_ERROR
    finally:
        heartbeat.stop()
    summary = run_summary.summarize(
        connection, config.name, gate_eval_config(config.gate), run_id=run_id, split_settings=split_settings(config)
    )
    print(run_summary.format_summary(summary), flush=True)
    _write_run_report(summary, home, config.name)
    if not summary.blessed:
        return EXIT_NOT_BLESSED
    if summary.pushed is not None and not summary.pushed.get("pushed"):
        return EXIT_NOT_BLESSED
    return EXIT_OK


def _write_run_report(summary: object, home: str, pipeline_name: str) -> str | None:
    """Write the run's HTML report and print ``report: <path>``; a failure is a warning, never a failed run."""
    from pipeline import report_inputs

    started = time.time()
    try:
        path = report_inputs.write_run_report(summary, home, pipeline_name)
    except Exception as e:  # noqa: BLE001 - the run's outcome stands without its report
        log.warning("no HTML report for run %s: %s: %s", getattr(summary, "run_id", "?"), type(e).__name__, e)
        print("report: not written (see the warning above)", flush=True)
        return None
    log.info("HTML report written in %.1fs", time.time() - started)
    print(f"report: {path}", flush=True)
    return path


def run(args: argparse.Namespace) -> int:
    """Entry point of ``shelf-audit run``: lock the home first (busy: exit 75 at once), run, unlock."""
    try:
        lock = home_lock.acquire(args.home)
    except home_lock.HomeBusy as e:
        print(f"error: {e}. Nothing was done; exit status {EXIT_BUSY}: try again later", file=sys.stderr)
        return EXIT_BUSY
    except OSError as e:
        print(f"error: cannot lock the home {os.path.abspath(args.home)}: {e}", file=sys.stderr)
        return EXIT_ERROR
    with lock:  # released on return and on any exception
        return _run_locked(args)


def _run_locked(args: argparse.Namespace) -> int:
    """``shelf-audit run`` while holding the home's lock."""
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
    return run_pipeline(config, args.home, force=args.force)
