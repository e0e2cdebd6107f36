"""A component that stops the run when the examples break the data contract.

ExampleValidator only records anomalies; nothing downstream looks at them.
Transform depends on this gate, so bad data never reaches training, and the
run fails with a readable list: ``split: feature: problem: detail``.

The schema cannot say "this is a decodable image of at least 64x64": the gate
also decodes every ``image/encoded`` the way Transform will (TensorFlow, to
grayscale) and names each record that fails, instead of letting Transform
die on the first one with a bare decode error.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.utils import io_utils

from shelf_data import contract
from shelf_data.validate import format_anomalies

ANOMALIES_FILE = "SchemaDiff.pb"
# Bad records listed in the error; the total is always given.
MAX_LISTED = 20


class DataAnomaliesError(RuntimeError):
    """The examples break the curated schema or hold images that do not decode."""


def anomaly_lines(artifact: tfx.types.standard_artifacts.ExampleAnomalies) -> list[str]:
    """Readable anomaly lines of every split of an ExampleAnomalies artifact."""
    lines = []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        lines += [f"{split}: {line}" for line in format_anomalies(anomalies)]
    return lines


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _decoded_shape(encoded: tf.Tensor) -> tf.Tensor:
    # The same decode as Transform; a traced function is several times faster than eager per record.
    return tf.shape(tf.io.decode_image(encoded, channels=1, expand_animations=False))


def _image_problem(encoded: bytes) -> str:
    """Why ``encoded`` is not a usable photo, or "" when it is."""
    try:
        shape = _decoded_shape(tf.constant(encoded)).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        return f"image does not decode ({str(e).splitlines()[0][:80]})"
    if min(shape[0], shape[1]) < contract.MIN_IMAGE_SIDE:
        return f"image is {shape[1]}x{shape[0]}, below {contract.MIN_IMAGE_SIDE}x{contract.MIN_IMAGE_SIDE}"
    return ""


def _first(feature: tf.train.Feature) -> str:
    values = feature.int64_list.value or [v.decode("utf-8", "replace") for v in feature.bytes_list.value]
    return str(values[0]) if values else "?"


def bad_image_lines(artifact: tfx.types.standard_artifacts.Examples) -> tuple[int, list[str]]:
    """Count of records whose image Transform could not use, and lines naming them (at most MAX_LISTED)."""
    count, lines = 0, []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        for path in sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([artifact], split), "*"))):
            compression = "GZIP" if path.endswith(".gz") else ""
            for index, raw in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)):
                features = tf.train.Example.FromString(raw.numpy()).features.feature
                images = features[contract.IMAGE_KEY].bytes_list.value if contract.IMAGE_KEY in features else []
                if not images:
                    continue  # a missing image is the schema's anomaly, reported above
                problem = _image_problem(images[0])
                if problem:
                    count += 1
                    if len(lines) < MAX_LISTED:
                        who = ", ".join(
                            f"{key}={_first(features[key])}"
                            for key in (contract.LANE_KEY, contract.DEVICE_KEY, contract.CAPTURED_AT_KEY)
                            if key in features
                        )
                        lines.append(f"{split}: {os.path.basename(path)} record {index} ({who}): {problem}")
    return count, lines


@component
def DataGate(  # noqa: N802
    anomalies: InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    examples: InputArtifact[tfx.types.standard_artifacts.Examples],
) -> None:
    """Raise DataAnomaliesError listing every problem; pass silently on clean data."""
    lines = anomaly_lines(anomalies)
    bad, image_lines = bad_image_lines(examples)
    if bad:
        lines += [f"{bad} record(s) with an unusable image:"] + image_lines
        if bad > len(image_lines):
            lines.append(f"... and {bad - len(image_lines)} more")
    if lines:
        raise DataAnomaliesError(
            "the examples break the data contract (shelf_data/schema.pbtxt, decodable images >= "
            f"{contract.MIN_IMAGE_SIDE}x{contract.MIN_IMAGE_SIDE}); run stopped before Transform:\n  "
            + "\n  ".join(lines)
        )
