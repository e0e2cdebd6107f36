"""Custom TFX components of the Shelf Audit Pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfx import types

# What TFX passes an executor's ``Do`` as inputs and outputs: artifact lists by key.
ArtifactDict = dict[str, list["types.Artifact"]]
ExecProperties = dict[str, Any]
