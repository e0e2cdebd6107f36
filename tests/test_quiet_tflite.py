"""A real LiteRT interpreter under the console script: its native INFO line is dropped, our lines stay in order.

LiteRT's ``ai_edge_litert.interpreter.Interpreter`` (what verification runs) prints
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++ to file descriptor 2, in three
writes, when an interpreter is created. With ``--verbose`` the line shows (so the text is checked against
:data:`shelf_audit.quiet.NATIVE_NOISE`); without, stdout and stderr in one file hold our lines only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from support import cli_helpers

from shelf_audit import quiet

pytestmark = pytest.mark.component

# A subcommand run by the real console script: a tiny model converted, then an interpreter created between
# numbered summary (stdout) and log (stderr) lines.
SCRIPT = textwrap.dedent(
    """
    import logging

    log = logging.getLogger("shelf_audit.run")

    def run(args):
        import tensorflow as tf
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)  # the saver's INFO lines: `run` keeps only stage lines

        class Tiny(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
            def __call__(self, x):
                return tf.nn.relu(x * 2.0)

        tiny = Tiny()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([tiny.__call__.get_concrete_function()], tiny)
        model = converter.convert()
        from ai_edge_litert.interpreter import Interpreter

        print("line 1 summary")
        log.info("line 2 log")
        interpreter = Interpreter(model_content=model)
        interpreter.allocate_tensors()
        log.info("line 3 log")
        print("line 4 summary")
        return 0

    """
) + cli_helpers.as_subcommand("interpreter")


def _run(tmp_path, *flags: str) -> list[str]:
    """The lines of stdout and stderr, written to one file, of ``shelf-audit [flags] interpreter``."""
    path = tmp_path / "log"
    with open(path, "wb") as f:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, *flags, "interpreter"],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            timeout=300,
        )
    text = path.read_bytes().decode()
    assert proc.returncode == 0, text
    assert text.endswith("\n")
    return text.splitlines()


def test_the_interpreters_native_info_line_is_noise_and_is_dropped(tmp_path):
    shown = [line for line in _run(tmp_path, "--verbose") if "XNNPACK" in line]
    assert shown == ["INFO: Created TensorFlow Lite XNNPACK delegate for CPU."]
    assert any(pattern.search(shown[0].encode()) for pattern in quiet.NATIVE_NOISE)

    lines = _run(tmp_path)
    ours = re.compile(r"(\d\d:\d\d:\d\d INFO shelf_audit\.run: )?line \d (summary|log)")
    assert [line for line in lines if not ours.fullmatch(line)] == []  # no third-party line at all
    assert [int(line.split("line ")[1][0]) for line in lines] == [1, 2, 3, 4]
