"""TFLitePusher: convert a blessed model to TFLite, verify it, publish it to the bucket."""

from components.tflite_pusher.component import TFLitePusher, TFLitePusherSpec

__all__ = ["TFLitePusher", "TFLitePusherSpec"]
