"""Feature keys of the transformed examples, shared by Transform, Trainer and Pusher.

Raw keys (the data contract) live in :mod:`shelf_data.contract`.
"""

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
