"""Quiet third-party output for commands that only build things (``compile``).

TFX, TFMA and google-cloud print dozens of import-time warnings and absl
INFO lines while a pipeline is compiled; none of them are about the user's
pipeline. ``--verbose`` keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
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
