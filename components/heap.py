"""Python's cyclic garbage collector in a process that runs TensorFlow, TFX and Beam stages.

A local run's one process holds millions of long-lived objects (the modules of
TensorFlow, TFX, Beam and TFMA; what the Trainer leaves in TensorFlow's and
Keras' caches) and every full collection walks all of them again. On a 1-epoch
demo run, 20 full collections took ~9 s: 1.6 s while importing, ~1 s in each of
the Evaluator and the pusher, the rest in the Trainer (measured with
``gc.callbacks``). Objects that live until
the process ends need not be walked again: ``gc.freeze()`` moves everything
alive into a permanent generation the collector ignores (reference counting
still frees those objects; only a reference cycle among them would then stay
until the process exits).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_after_imports() -> Iterator[None]:
    """No collection while the block imports, one after it, then freeze what is left.

    Importing TensorFlow, TFX, Beam and TFMA triggers ~8 full collections (1.6 s)
    while the modules it loads live until the process ends anyway; the one
    collection afterwards (~0.8 s) frees the ~400,000 objects the imports left
    in reference cycles, so nothing garbage is frozen.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if was_enabled:
            gc.enable()


def settle() -> None:
    """After a heavy stage: collect its garbage, then freeze what survives for later stages' collections.

    A stage that runs in its own process (one Kubeflow pod per component) exits
    soon after; nothing changes for it.
    """
    gc.collect()
    gc.freeze()
