"""Set-up check: every library a run loads, loaded before the first stage runs.

Some stages import their libraries only when they start (the pusher's LiteRT
and signing, the Evaluator's TFMA). A native module that cannot load its
system library would otherwise stop a run minutes in, after training. This
check imports them all at once, at set-up: ``make env`` runs it after building
the environment, and ``shelf-audit run`` before any stage.

    python -m shelf_audit.preflight [MODULE ...]   # exit 0, or 1 naming each module that cannot load and why
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence

# What the local DAG's stages import, lazily or not (the Kubeflow compile path is not a run's).
RUN_MODULES = (
    "tensorflow",
    "tf_keras",
    "apache_beam",
    "tfx.orchestration.local.local_dag_runner",
    "ml_metadata.metadata_store",
    "tfx_bsl.public.tfxio",
    "tensorflow_data_validation",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "ai_edge_litert.interpreter",
    "flatbuffers",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "matplotlib.backends.backend_agg",
    "PIL.Image",
    "components.tflite_pusher.executor",
    "shelf_tflite.metadata",
)

_MISSING_LIBRARY = re.compile(r"(?P<library>[\w.+-]+\.so[\w.]*): cannot open shared object file")


def describe(module: str, error: BaseException) -> str:
    """One line naming the module, what it lacks and how to get it."""
    match = _MISSING_LIBRARY.search(str(error))
    if match:
        library = match.group("library")
        return (
            f"{module} cannot load the system library {library}, which this machine lacks "
            f"(Debian/Ubuntu: `apt-file search {library}` names the package to install)"
        )
    return f"{module} cannot be imported: {type(error).__name__}: {error} (rebuild the environment: make env)"


def problems(modules: Sequence[str] = RUN_MODULES) -> list[str]:
    """A line per module that cannot be imported; empty when every one loads."""
    found = []
    for module in modules:
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as error:
            found.append(describe(module, error))
    return found


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Imports' own chatter (native log lines on fd 2, Python warnings) is not this check's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Import the modules named in ``argv`` (default :data:`RUN_MODULES`); print what failed; 0 when all load."""
    modules = tuple(sys.argv[1:] if argv is None else argv) or RUN_MODULES
    started = time.time()
    with _silenced():
        found = problems(modules)
    for line in found:
        print(f"error: set-up: {line}", file=sys.stderr)
    if found:
        print(f"error: set-up: {len(found)} of {len(modules)} modules a run needs cannot load", file=sys.stderr)
        return 1
    print(f">> set-up check: the {len(modules)} modules a run loads import ({time.time() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
