"""TFLitePusher: convert a blessed model to TFLite, verify it, publish it to the bucket.

The component is imported on first use: the config loader reads the settings
(:mod:`components.tflite_pusher.settings`) without loading TFX.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TFLitePusher", "TFLitePusherSpec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from components.tflite_pusher import component

        return getattr(component, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
