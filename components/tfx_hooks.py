"""Swapping one piece of a TFX executor that offers no hook for it, for the length of one call.

TFX's Transform and ExampleGen executors build their writers from module-level
names (``TransformProcessor``, ``write_split.WriteSplit``) inside ``Do``.
:func:`rebound` points such a name at our replacement while our executor's
``Do`` runs (the Beam pipeline is built there) and restores it afterwards,
also when ``Do`` fails. Executors run one at a time in a process (local DAG
runner, one Kubeflow pod per component), so nothing else sees the swap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any


@contextlib.contextmanager
def rebound(module: ModuleType, name: str, value: Any) -> Iterator[None]:
    """``module.<name>`` is ``value`` inside the block, what it was before outside it.

    Raises:
        AttributeError: ``module`` has no ``name`` (TFX renamed it: nothing is swapped silently).
    """
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)
