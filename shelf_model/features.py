"""Feature keys of the transformed examples, shared by Transform, Trainer and Pusher.

Raw keys (the data contract) live in :mod:`shelf_data.contract`.
"""

from collections.abc import Sequence

from shelf_data import contract

# Transformed features.
PIXELS_KEY = "pixels"  # tf.io.serialize_tensor of uint8 [size, size, 1], values 0..255
LABEL_KEY = contract.LABEL_KEY
LANE_KEY = contract.LANE_KEY
DEVICE_KEY = contract.DEVICE_KEY
LIGHTING_KEY = contract.LIGHTING_KEY
UNKNOWN_LIGHTING = "unknown"

# The exported SavedModel's signatures.
SERVING_SIGNATURE = "serving_default"  # serialized tf.Example -> probabilities
TRANSFORM_SIGNATURE = "transform_features"  # serialized tf.Example -> transformed features
IMAGE_SIGNATURE = "serving_image"  # float32 pixels [None, size, size, 1], 0..255 -> probabilities
RGB_SIGNATURE = "serving_rgb"  # uint8 RGB [None, size, size, 3], 0..255 -> probabilities (BT.601 gray inside)
IMAGE_INPUT = "image"
PROBABILITIES = "probabilities"

NUM_CLASSES = contract.NUM_CLASSES

# Transformed examples are plain TFRecords named ``*.tfrecord``; earlier versions' Transform runs
# wrote GZIP ``*.gz`` (TFX's default). Readers go by the name, as TFX's readers do.
TRANSFORMED_SUFFIX = ".tfrecord"


def compression_type(files: Sequence[str]) -> str:
    """``tf.data.TFRecordDataset``'s ``compression_type`` for TFRecord files, from their names.

    ``"GZIP"`` when every name ends in ``.gz``, ``""`` (none) when no name does.

    Raises:
        ValueError: some names end in ``.gz`` and some do not (one dataset reads
            one compression); the message names one file of each kind.
    """
    gzipped = [f for f in files if f.endswith(".gz")]
    plain = [f for f in files if not f.endswith(".gz")]
    if gzipped and plain:
        raise ValueError(
            f"mixed compression: {len(gzipped)} GZIP file(s) (e.g. {gzipped[0]}) and "
            f"{len(plain)} uncompressed (e.g. {plain[0]}); one split must be all one or the other"
        )
    return "GZIP" if gzipped else ""
