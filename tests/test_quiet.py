"""Third-party noise: the native stderr filter and the logging filter keep our lines and real errors."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

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
