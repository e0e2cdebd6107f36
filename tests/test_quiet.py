"""Third-party noise is dropped, our lines and real errors kept; stdout and stderr come out whole and in order."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest
from support import cli_helpers

from shelf_audit import quiet

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys
    from shelf_audit.quiet import NativeStderrFilter
    f = NativeStderrFilter().start()
    os.write(2, b"2026-11-25 21:16:50.401981: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] "
                b"Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one has "
                b"already been registered\\n")
    os.write(2, b"2026-11-25 21:16:50.5: E tensorflow/core/framework/op_kernel.cc:1] real failure: out of memory\\n")
    os.write(2, b"W0000 00:00:1764105445.123 123 tf_tfl_flatbuffer_helpers.cc:390] Ignored output_format.\\n")
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")  # the newline comes in its own write
    os.write(2, b"\\n")
    os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32")
    os.write(2, b"\\n")
    os.write(2, b"progress 1\\rprogress 2")
    print("from python stderr", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'2026-01-01 00:00:00.1: E x.cc:1] Unable to "
                    "register cuBLAS factory: Attempting to register factory for plugin cuBLAS\\\\nchild real\\\\n')"])
    f.stop()
    print("dropped", f.dropped)
    """
)


def test_native_filter_drops_known_lines_only_also_from_children():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60)
    err = proc.stderr.decode()  # bytes: text mode would turn the carriage return into a newline
    assert proc.returncode == 0, err
    assert "Unable to register" not in err
    assert "Ignored output_format" not in err
    assert "XNNPACK" not in err and "fully_quantize" not in err
    assert "real failure: out of memory" in err
    assert "progress 1\rprogress 2" in err
    assert "from python stderr" in err
    assert "child real" in err
    assert "dropped 5" in proc.stdout.decode()


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_third_party_filter_by_logger_and_root_message():
    keep = quiet.ThirdPartyFilter().filter
    assert not keep(_record("tensorflow", logging.INFO, "struct2tensor is not available."))
    assert not keep(_record("tensorflow", logging.WARNING, "From x: tf_record_iterator is deprecated"))
    assert keep(_record("tensorflow", logging.ERROR, "a real error"))
    assert not keep(_record("apache_beam.io.tfrecordio", logging.WARNING, "Couldn't find python-snappy"))
    assert not keep(_record("root", logging.INFO, "Missing pipeline option (runner). Executing pipeline"))
    assert not keep(_record("root", logging.INFO, "BatchElements statistics: element_count=89"))
    assert keep(_record("root", logging.INFO, "something else a library says"))
    assert keep(_record("shelf_audit.run", logging.INFO, "running devrun"))
    assert keep(_record("shelf_model.trainer", logging.INFO, "epoch 1/2: loss 0.5"))


# --- One stream a person can read: stdout and stderr in one file, pipe or two files -----------------------------

# A subcommand run by the real console script (cli.console_main: quiet setup, logging, the quick os._exit).
# It writes lines to stdout (print), to logging, and natively to file descriptor 2 (from this process, a thread
# and a child), numbered in the order they are completed (their newline written), and TFLite's delegate line,
# whole and in TFLite's own three pieces. The last stdout line has no newline.
ONE_STREAM = textwrap.dedent(
    """
    import ctypes, logging, os, subprocess, sys, threading

    XNNPACK = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    libc = ctypes.CDLL(None)
    log = logging.getLogger("shelf_audit.run")

    def native(data):
        assert libc.write(2, data, len(data)) == len(data)

    def run(args):
        n = 0
        for _ in range(40):
            log.info("line %d log", n + 1)
            print(f"line {n + 2} summary")
            os.write(2, XNNPACK + b"\\n")
            native(f"line {n + 3} native\\n".encode())
            native(b"INFO: "); native(XNNPACK[6:]); native(b"\\n")  # as TFLite writes it
            print(f"line {n + 4} summary", flush=True)
            native(f"line {n + 7} native, ".encode())  # a partial write, ended after the next stdout line
            print(f"line {n + 5} summary\\nline {n + 6} summary")  # one print, two lines
            native(b"ended\\n")
            print(f"line {n + 8} stderr print", file=sys.stderr)
            n += 8
        thread = threading.Thread(target=lambda: log.info("line %d log from a thread", n + 1))
        thread.start(); thread.join()
        child = "import os; os.write(2, b'line %d child\\\\n' + %r + b'\\\\n')" % (n + 2, XNNPACK)
        subprocess.run([sys.executable, "-c", child], check=True)
        print(f"line {n + 3} summary, last; no newline", end="")
        return 0

    sys.argv = ["shelf-audit", "one-stream"]
    """
) + cli_helpers.as_subcommand("one-stream")
ONE_STREAM_LINES = 40 * 8 + 3


# Each line ONE_STREAM writes, exactly; two run together or one cut in two match none.
ONE_STREAM_LINE = re.compile(
    r"(?:\d\d:\d\d:\d\d INFO shelf_audit\.run: )?line (\d+) "
    r"(?:log|log from a thread|summary|summary, last; no newline|native|native, ended|stderr print|child)"
)


def _numbered(text: str) -> list[int]:
    """The line numbers in ``text``, each line checked to be exactly one whole line of ONE_STREAM."""
    assert text.endswith("\n")
    numbers = []
    for line in text.splitlines():
        match = ONE_STREAM_LINE.fullmatch(line)
        assert match, f"not one whole line: {line!r}"
        numbers.append(int(match.group(1)))
    return numbers


def _one_stream_env(unbuffered: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:  # as in the image and the systemd unit: print's text and newline are two writes
        env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_stdout_and_stderr_in_one_file_come_out_whole_in_order_and_filtered(tmp_path, unbuffered):
    path = tmp_path / "log"
    with open(path, "wb") as f:  # cron's `>> log 2>&1`
        proc = subprocess.run(
            [sys.executable, "-c", ONE_STREAM],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_one_stream_env(unbuffered),
            timeout=60,
        )
    text = path.read_bytes().decode()
    assert proc.returncode == 0, text
    assert "XNNPACK" not in text
    assert _numbered(text) == list(range(1, ONE_STREAM_LINES + 1))


def test_stdout_and_stderr_in_one_pipe_come_out_whole_in_order_and_filtered():
    proc = subprocess.run(
        [sys.executable, "-c", ONE_STREAM],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_one_stream_env(True),
        timeout=60,
    )
    text = proc.stdout.decode()
    assert proc.returncode == 0, text
    assert "XNNPACK" not in text
    assert _numbered(text) == list(range(1, ONE_STREAM_LINES + 1))


def test_stdout_and_stderr_in_two_files_each_whole_in_order_and_filtered(tmp_path):
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.run([sys.executable, "-c", ONE_STREAM], stdout=out, stderr=err, timeout=60)
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert proc.returncode == 0, stderr
    assert "XNNPACK" not in stderr
    assert all("summary" in line for line in stdout.splitlines())
    assert not any("summary" in line for line in stderr.splitlines())
    assert sorted(_numbered(stdout) + _numbered(stderr)) == list(range(1, ONE_STREAM_LINES + 1))
    assert _numbered(stdout) == sorted(_numbered(stdout)) and _numbered(stderr) == sorted(_numbered(stderr))


# What a process sees with both streams on a terminal: isatty() true for file descriptors 1 and 2 and for
# sys.stdout and sys.stderr (the same checks quiet.py and the progress lines make). The bytes go to one pipe:
# a pseudo-terminal needs /dev/pts, which minimal roots and some containers do not mount.
AS_ON_A_TERMINAL = textwrap.dedent(
    """
    import io, os, sys
    _isatty = os.isatty
    os.isatty = lambda fd: fd in (1, 2) or _isatty(fd)

    class _Terminal(io.TextIOWrapper):
        def isatty(self):
            return True

    sys.stdout = _Terminal(sys.stdout.detach(), encoding="utf-8", line_buffering=True)
    sys.stderr = _Terminal(sys.stderr.detach(), encoding="utf-8", line_buffering=True)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    """
)


def _on_a_terminal(script: str) -> str:
    """Run ``script`` as if stdout and stderr were one terminal; what that terminal got."""
    proc = subprocess.run(
        [sys.executable, "-c", AS_ON_A_TERMINAL + script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_one_stream_env(True),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout
    return proc.stdout.decode()


def test_stdout_and_stderr_on_one_terminal_come_out_whole_in_order_and_filtered():
    text = _on_a_terminal(ONE_STREAM)
    assert "XNNPACK" not in text
    assert _numbered(text) == list(range(1, ONE_STREAM_LINES + 1))


def test_a_progress_line_redraws_in_place_on_a_terminal_and_a_stdout_line_starts_its_own():
    text = _on_a_terminal(
        textwrap.dedent(
            """
            import sys
            from shelf_audit.quiet import OrderedOutput
            output = OrderedOutput().start()
            for batch in range(3):
                sys.stderr.write(f"\\r\\033[Kepoch 1: batch {batch}")
                sys.stderr.flush()
            print("a summary line")
            sys.stderr.write("\\r\\033[Kepoch 1: done\\n")
            output.stop()
            """
        )
    )
    redraws = "".join(f"\r\033[Kepoch 1: batch {batch}" for batch in range(3))
    assert text == redraws + "\na summary line\n\r\033[Kepoch 1: done\n"
