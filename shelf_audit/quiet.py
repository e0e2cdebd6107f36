"""Quiet third-party output: a person sees our stage lines, progress and the summary.

TFX, TFMA, Beam and google-cloud print dozens of import-time warnings and INFO
lines, and TensorFlow's C++ side prints start-up lines on every import; none
of them are about the user's run. Each source is quietened with its own switch
(environment settings read at import, per-logger levels, warnings filters,
absl verbosity); only TensorFlow's C++ start-up lines, which have no switch
that spares real errors, are dropped by text (:class:`NativeStderrFilter`).
``--verbose`` keeps everything.

Whatever stdout and stderr are (a terminal, two files, or one file or pipe under
cron, systemd or CI), lines come out whole and in the order they were written:
:class:`OrderedOutput` writes stdout a whole line at a time, after every stderr
line written before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO


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


# --- Run-time noise: third-party lines a plain run would print among its own ----------------------------------

# TensorFlow 2.16's C++ start-up lines on a machine without a GPU. They are logged at ERROR level, so the only
# switch that hides them (TF_CPP_MIN_LOG_LEVEL=3) would hide real C++ errors too; they are dropped by text instead,
# and everything else TensorFlow's C++ side writes still shows.
# compatibility shim: docs/design-decisions.md#compatibility-shims
NATIVE_NOISE = (
    re.compile(rb"Unable to register cu(FFT|DNN|BLAS) factory: Attempting to register factory for plugin"),
    re.compile(rb"TF-TRT Warning: Could not find TensorRT"),
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    # TFLite's INFO lines: the interpreter's, on creating one (tf.lite.Interpreter and LiteRT's
    # ai_edge_litert.interpreter.Interpreter print the same text, in three writes: "INFO: ", the text, the
    # newline), and the quantizer's.
    re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),
    re.compile(rb"^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$"),
    # The TFLite converter's MLIR pass options, one per conversion.
    re.compile(rb"^W0000 [0-9:. ]+\d+ \w+\.cc:\d+\] (Ignored output_format|Ignored drop_control_dependency)"),
)

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
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")


# Every write this module makes to the user's stdout or stderr holds this lock: the pump's filtered stderr lines
# and :class:`WholeLineStdout`'s lines. Reentrant, so a write made while it is held (a signal handler's) cannot
# deadlock.
OUTPUT_LOCK = threading.RLock()


def _new_output_lock() -> None:
    """A forked child's own lock: the parent's may have been held by a thread the child does not have."""
    global OUTPUT_LOCK
    OUTPUT_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_new_output_lock)

# A partial line longer than this is passed on without waiting for its newline (memory stays bounded).
_LONGEST_HELD = 65536


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a pipe or terminal may take a write in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class NativeStderrFilter:
    """Drop the lines of :data:`NATIVE_NOISE` from file descriptor 2, where C++ libraries write.

    File descriptor 2 becomes a pipe read by a thread that passes every other byte on to the real stderr, so
    child processes (Beam workers) are filtered too. A terminal on the real stderr is remembered in
    ``SHELF_AUDIT_STDERR_TTY=1`` (the pipe is not a terminal), so progress lines still redraw in place.

    The order of lines is kept with stdout's: :meth:`flush` passes on, before it returns, every line already
    written to file descriptor 2, and :class:`WholeLineStdout` calls it before each stdout line. The pipe is
    read only while :data:`OUTPUT_LOCK` is held, so no line can sit read but unwritten while a stdout line
    overtakes it. Only whole lines are passed on: a partial line waits for its newline (TFLite writes its
    INFO lines in three pieces), and one left at the end gets a newline, so a line never runs into another
    written to the same file, stdout's or the next run's. The one exception is a progress line redrawn in place
    with a carriage return on a terminal, shown at once.
    """

    def __init__(self, patterns: tuple[re.Pattern[bytes], ...] = NATIVE_NOISE) -> None:
        self.patterns = patterns
        self.dropped = 0
        self._saved: int | None = None
        self._read_end: int | None = None  # the pipe; None once the pump has closed it
        self._out: int | None = None  # the real stderr
        self._tty = False
        self._pending = b""  # the start of a line whose newline has not come yet
        self._line_open = False  # the last bytes passed on did not end a line
        self._thread: threading.Thread | None = None
        self._pid = 0  # the process that reads the pipe (a forked child leaves it to its parent)

    def start(self) -> NativeStderrFilter:
        """Put the pipe in place; a no-op when already started."""
        if self._saved is not None:
            return self
        sys.stderr.flush()
        self._tty = os.isatty(2)
        if self._tty:
            os.environ["SHELF_AUDIT_STDERR_TTY"] = "1"
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end, self._out = read_end, os.dup(self._saved)
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._pump, name="native-stderr-filter", daemon=True)
        self._thread.start()
        return self

    def flush(self) -> None:
        """Pass on every whole line written to file descriptor 2 so far (noise dropped) before returning.

        A progress line left open on a terminal is ended, so what is written next starts a line of its own.
        """
        with OUTPUT_LOCK:
            if self._read_end is not None and os.getpid() == self._pid:
                self._drain()
                if self._line_open:
                    self._emit(b"\n")

    def stop(self) -> None:
        """Give file descriptor 2 back and pass on what is left in the pipe, a partial last line ended."""
        if self._saved is None or os.getpid() != self._pid:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes our write end of the pipe; the pump then sees end-of-file
        os.close(self._saved)
        self._saved = None
        with OUTPUT_LOCK:  # at once, not left to the thread: a child still holding the pipe delays its end
            if self._read_end is not None:
                self._drain()
                self._end_line()
        if self._thread is not None:
            self._thread.join(timeout=2.0)  # a child still holding the pipe must not hang the exit

    def _noise(self, line: bytes) -> bool:
        return any(p.search(line) for p in self.patterns)

    def _pump(self) -> None:
        assert self._read_end is not None
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        while True:
            poller.poll()  # without the lock: a stdout line may be written meanwhile, after draining the pipe
            with OUTPUT_LOCK:
                if not self._drain():  # end of file: every write end is closed
                    self._end_line()
                    os.close(self._read_end)
                    os.close(self._out)
                    self._read_end = self._out = None
                    return

    def _drain(self) -> bool:
        """Read the pipe until it is empty and pass its lines on; False at end of file. Holds OUTPUT_LOCK."""
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        kept = [line + b"\n" for line in lines if not self._noise(line)]
        self.dropped += len(lines) - len(kept)
        if self._pending and ((self._tty and b"\r" in self._pending) or len(self._pending) > _LONGEST_HELD):
            kept.append(self._pending)  # a progress line redrawn in place on a terminal: show it now
            self._pending = b""
        self._emit(b"".join(kept))

    def _end_line(self) -> None:
        """Pass on a partial last line, and end the output's last line if it is open."""
        if self._pending:
            if self._noise(self._pending):
                self.dropped += 1
            else:
                self._emit(self._pending)
            self._pending = b""
        if self._line_open:
            self._emit(b"\n")

    def _emit(self, data: bytes) -> None:
        if data and self._out is not None:
            _write_all(self._out, data)
            self._line_open = not data.endswith(b"\n")


class WholeLineStdout:
    """``sys.stdout`` that writes whole lines only, each after every line written to stderr before it.

    ``print`` writes its text and its newline separately, and an unbuffered stdout (``PYTHONUNBUFFERED=1``, as
    in the image and the systemd unit) passes each write straight on: with stdout and stderr in one file a
    stderr line could land between them. Here text waits for its newline; then ``before_line`` runs (the stderr
    filter's :meth:`NativeStderrFilter.flush`) and the line is written and flushed, all under
    :data:`OUTPUT_LOCK`. On a terminal :meth:`flush` also shows a partial line (a prompt); :meth:`finish` ends
    one with a newline. Everything else is the wrapped stream's.
    """

    def __init__(self, stream: TextIO, before_line: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.before_line = before_line
        self._pending = ""
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False

    def write(self, text: str) -> int:
        """Hold ``text`` until its line ends; write every completed line at once."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with OUTPUT_LOCK:
            self._pending += text
            end = self._pending.rfind("\n") + 1
            if end == 0 and len(self._pending) > _LONGEST_HELD:
                end = len(self._pending)
            if end:
                lines, self._pending = self._pending[:end], self._pending[end:]
                self._emit(lines)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines`` (no newlines added)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream; on a terminal, show a partial line too."""
        with OUTPUT_LOCK:
            if self._pending and self._tty:
                text, self._pending = self._pending, ""
                self._emit(text)
            else:
                self.stream.flush()

    def finish(self) -> None:
        """Write a partial last line with a newline."""
        with OUTPUT_LOCK:
            if self._pending:
                text, self._pending = self._pending + "\n", ""
                self._emit(text)

    def _emit(self, text: str) -> None:
        if self.before_line is not None:
            self.before_line()
        self.stream.write(text)
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class OrderedOutput:
    """The command line's output: stdout in whole lines, ordered with stderr; native noise filtered.

    :meth:`start` puts :class:`WholeLineStdout` on ``sys.stdout`` and, when ``filter_native``, starts a
    :class:`NativeStderrFilter`; :meth:`stop` ends a partial stdout line, gives ``sys.stdout`` and file
    descriptor 2 back and passes on what is left. Lines come out whole and in the order they were written,
    whether stdout and stderr are a terminal, two files or one file or pipe.
    """

    def __init__(self, filter_native: bool = True) -> None:
        self.native = NativeStderrFilter() if filter_native else None
        self.stdout: WholeLineStdout | None = None

    def start(self) -> OrderedOutput:
        """Filter file descriptor 2 (unless told not to) and wrap ``sys.stdout``."""
        sys.stdout.flush()
        if self.native is not None:
            self.native.start()
        self.stdout = WholeLineStdout(sys.stdout, self.native.flush if self.native is not None else None)
        sys.stdout = self.stdout
        return self

    def stop(self) -> None:
        """End a partial stdout line, restore ``sys.stdout``, stop the filter (draining its pipe)."""
        try:
            if self.stdout is not None:
                self.stdout.finish()
        finally:  # a closed stdout (`| head`) still gives everything back
            if self.stdout is not None and sys.stdout is self.stdout:
                sys.stdout = self.stdout.stream
            self.stdout = None
            if self.native is not None:
                self.native.stop()


def stderr_is_terminal() -> bool:
    """Whether the user's stderr is a terminal, also behind :class:`NativeStderrFilter`'s pipe."""
    return os.environ.get("SHELF_AUDIT_STDERR_TTY") == "1" or os.isatty(2)
