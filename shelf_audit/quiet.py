"""Quiet third-party output: a person sees our stage lines, progress and the summary.

TFX, TFMA, Beam and google-cloud print dozens of import-time warnings and INFO
lines, and TensorFlow's C++ side prints start-up lines on every import; none
of them are about the user's run. Each source is quietened with its own switch
(environment settings read at import, per-logger levels, warnings filters,
absl verbosity); only TensorFlow's C++ start-up lines, which have no switch
that spares real errors, are dropped by text (:class:`NativeStderrFilter`).
``--verbose`` keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def tfx_compile(verbose: bool = False) -> Iterator[None]:
    """Silence Python warnings and absl/TFX logging below ERROR inside the block (unless ``verbose``)."""
    if verbose:
        yield
        return
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            absl_logging.set_verbosity(previous)
            root.setLevel(level)


# --- Run-time noise (issue: a tiny run printed 38 third-party lines of 65) -------------------------------------

# TensorFlow 2.16's C++ start-up lines on a machine without a GPU. They are logged at ERROR level, so the only
# switch that hides them (TF_CPP_MIN_LOG_LEVEL=3) would hide real C++ errors too; they are dropped by text instead,
# and everything else TensorFlow's C++ side writes still shows.
NATIVE_NOISE = (
    re.compile(rb"Unable to register cu(FFT|DNN|BLAS) factory: Attempting to register factory for plugin"),
    re.compile(rb"TF-TRT Warning: Could not find TensorRT"),
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    # The TFLite interpreter's and quantizer's INFO lines, printed without any prefix.
    re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),
    re.compile(rb"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$"),
    # The TFLite converter's MLIR pass options, one per conversion.
    re.compile(rb"^W0000 [0-9:. ]+\d+ \w+\.cc:\d+\] (Ignored output_format|Ignored drop_control_dependency)"),
)
# A native log line starts with a timestamp or an absl/glog prefix; a partial write that does not is passed on
# at once (a progress line redrawn with a carriage return), one that does waits for its newline to be judged.
# TFLite's own INFO lines and the quantizer's line arrive in pieces (the newline written separately), so a partial
# line starting like them waits for its newline too.
_NATIVE_PREFIX = re.compile(rb"^(\d{4}-\d\d-\d\d |[EWIF]\d{4} |INFO: |WARNING: |fully_quantize: )")

# Python loggers and messages from third parties that say nothing about the user's run (shown with --verbose).
# Names are logger names; the levels are the lowest that still shows.
THIRD_PARTY_LEVELS = {
    "tensorflow": logging.ERROR,  # "struct2tensor is not available" x3 per stage, "Assets written to", deprecations
    "apache_beam": logging.ERROR,  # "Couldn't find python-snappy", BatchElements statistics, runner defaults
    "tfx": logging.WARNING,
    "tensorflow_model_analysis": logging.ERROR,
    "tensorflow_transform": logging.WARNING,
    "tensorflow_data_validation": logging.WARNING,
    "h5py": logging.WARNING,
    "matplotlib": logging.WARNING,
    "PIL": logging.WARNING,
}
# Logged on the root logger by Beam and TFX helpers (logging.info(...) without a name).
ROOT_NOISE = (
    "Missing pipeline option (runner)",
    "BatchElements statistics",
    "Reading from pattern",
    "Couldn't find python-snappy",
    "Default Python SDK image",
    "Setting socket default timeout",
)


def quiet_environment(verbose: bool) -> None:
    """Environment switches read when TensorFlow, gRPC and absl load: call before importing them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")  # C++ INFO and WARNING lines
    if not verbose:  # verbose leaves gRPC's default: a DEBUG here would leak to every later child process
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


class ThirdPartyFilter(logging.Filter):
    """Drop third-party log records below their logger's level in :data:`THIRD_PARTY_LEVELS`.

    Installed on the handler (not by raising the loggers' levels), so a library that resets its own
    logger's level on import (TensorFlow does) is still filtered.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root":
            return record.levelno >= logging.ERROR or not record.getMessage().startswith(ROOT_NOISE)
        name = record.name
        while name:
            level = THIRD_PARTY_LEVELS.get(name)
            if level is not None:
                return record.levelno >= level
            name = name.rpartition(".")[0]
        return True


def quiet_python_logging() -> None:
    """Install :class:`ThirdPartyFilter` on the root handlers, silence absl's Python INFO, ignore known warnings."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)  # stage lines come from absl INFO; the run filters the rest
    for handler in logging.getLogger().handlers:
        handler.addFilter(ThirdPartyFilter())
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*tf_record_iterator.*")
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")


class NativeStderrFilter:
    """Drop the lines of :data:`NATIVE_NOISE` from file descriptor 2, where C++ libraries write.

    File descriptor 2 becomes a pipe read by a thread that passes every other byte on to the real stderr, so
    child processes (Beam workers) are filtered too. A terminal on the real stderr is remembered in
    ``SHELF_AUDIT_STDERR_TTY=1`` (the pipe is not a terminal), so progress lines still redraw in place.
    """

    def __init__(self, patterns: tuple[re.Pattern[bytes], ...] = NATIVE_NOISE) -> None:
        self.patterns = patterns
        self.dropped = 0
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> NativeStderrFilter:
        """Put the pipe in place; a no-op when already started."""
        if self._saved is not None:
            return self
        sys.stderr.flush()
        if os.isatty(2):
            os.environ["SHELF_AUDIT_STDERR_TTY"] = "1"
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(self._saved)), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Give file descriptor 2 back and pass on what is left in the pipe."""
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes our write end of the pipe; the pump then sees end-of-file
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # a child still holding the pipe must not hang the exit

    def _noise(self, line: bytes) -> bool:
        return any(p.search(line) for p in self.patterns)

    def _pump(self, read_end: int, out: int) -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = [line + b"\n" for line in lines if not self._noise(line)]
                self.dropped += len(lines) - len(kept)
                if pending and not _NATIVE_PREFIX.match(pending):
                    kept.append(pending)  # a partial line that is not a native log line: show it now
                    pending = b""
                if kept:
                    os.write(out, b"".join(kept))
            if pending and not self._noise(pending):
                os.write(out, pending)
        finally:
            os.close(read_end)
            os.close(out)


def stderr_is_terminal() -> bool:
    """Whether the user's stderr is a terminal, also behind :class:`NativeStderrFilter`'s pipe."""
    return os.environ.get("SHELF_AUDIT_STDERR_TTY") == "1" or os.isatty(2)
