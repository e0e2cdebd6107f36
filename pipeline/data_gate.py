"""A component that stops the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies; nothing downstream looks at them.
Transform depends on this gate, so bad data never reaches training, and the
run fails with a readable list: ``split: feature: problem: detail``.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.utils import io_utils

from shelf_data.validate import format_anomalies

ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
    """The examples break the curated schema."""


def anomaly_lines(artifact: tfx.types.standard_artifacts.ExampleAnomalies) -> list[str]:
    """Readable anomaly lines of every split of an ExampleAnomalies artifact."""
    lines = []
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(path))
        lines += [f"{split}: {line}" for line in format_anomalies(anomalies)]
    return lines


@component
def DataGate(anomalies: InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]) -> None:  # noqa: N802
    """Raise DataAnomaliesError listing every anomaly; pass silently on clean data."""
    lines = anomaly_lines(anomalies)
    if lines:
        raise DataAnomaliesError(
            f"the examples break schemas/schema.pbtxt ({len(lines)} anomalies); run stopped before Transform:\n  "
            + "\n  ".join(lines)
        )
