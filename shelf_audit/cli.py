"""The ``shelf-audit`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their subcommand
is chosen, so ``shelf-audit --help`` does not pay for importing TensorFlow.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

# Every subcommand's exit statuses, re-exported for callers of `main`.
from shelf_audit.exit_codes import EXIT_BUSY as EXIT_BUSY
from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK
from shelf_audit.exit_codes import EXIT_NOT_BLESSED as EXIT_NOT_BLESSED
from shelf_audit.exit_codes import EXIT_USAGE as EXIT_USAGE

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("shelf_data.synth", "write synthetic shelf photos in the data contract"),
    "pack": ("shelf_audit.pack_cmd", "pack a folder of labelled photos into the data contract"),
    "inspect": ("shelf_data.inspect", "count photos per span/class/lane/device and draw a contact sheet"),
    "run": ("shelf_audit.run_cmd", "run the TFX pipeline locally (Beam DirectRunner; ML Metadata in SQLite or MySQL)"),
    "compile": ("shelf_audit.compile_cmd", "write the Kubeflow Pipelines V2 spec (runtime parameters, project image)"),
    "models": ("shelf_audit.models_cmd", "list, show, verify or roll back models in a bucket"),
    "schedule": ("shelf_audit.schedule_cmd", "create a Kubeflow Pipelines recurring run (cron) of a compiled spec"),
    "report": ("shelf_audit.report_cmd", "write the self-contained HTML report of a run, or compare two runs/versions"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="shelf-audit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shelf-audit`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from shelf_audit import quiet

    # Before TensorFlow, gRPC or absl load (the chosen subcommand's module may import them).
    verbose = any(a in ("-v", "--verbose") for a in argv)
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    # TFT switches the process to Keras 2; say so before TensorFlow loads.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    quiet.quiet_environment(verbose)
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    # google-api-core warns on every import that Python 3.10 support is ending; TFX 1.16 needs 3.10.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
    # Whole stdout lines in order with stderr's (one file under cron, systemd or CI); without --verbose,
    # native noise dropped from file descriptor 2.
    output = quiet.OrderedOutput(filter_native=not verbose).start()
    try:
        args = build_parser(argv).parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        if not args.verbose:
            quiet.quiet_python_logging()
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_ERROR
    finally:
        output.stop()


# The status console_main exits with, set once main has returned or raised.
_exit_status: list[int] = []


def _exit_now() -> None:
    """The last atexit handler: shut logging down, flush both streams, leave without interpreter teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(_exit_status[-1] if _exit_status else EXIT_ERROR)


def console_main() -> NoReturn:
    """The ``shelf-audit`` console script: :func:`main`, then a quick exit.

    A process that has imported TensorFlow, TFX and Beam spends 2.5-3 s after
    its last line destroying their modules (measured here), on every command.
    Nothing is lost by skipping that: non-daemon threads are joined and every
    atexit handler runs first (this one is registered before the subcommand's
    modules are imported, so it runs last), logging is shut down and the
    streams are flushed; the exit status is :func:`main`'s, argparse's (2, or
    0 for ``--help``) or 1 after an uncaught exception's traceback.
    """
    atexit.register(_exit_now)
    status = EXIT_ERROR
    try:
        status = main()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_ERROR)
        raise
    finally:
        _exit_status.append(status)
    sys.exit(status)


if __name__ == "__main__":
    console_main()
