"""The curated schema: its exact contract, and TFDV validation of pack and synth output."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from shelf_data import contract
from shelf_data.validate import DEFAULT_SCHEMA_PATH, format_anomalies, load_schema, validate_records

pytestmark = pytest.mark.unit

REQUIRED = (contract.IMAGE_KEY, contract.LABEL_KEY, contract.LANE_KEY, contract.DEVICE_KEY)
OPTIONAL = (contract.CAPTURED_AT_KEY, contract.LIGHTING_KEY)


@pytest.fixture(scope="module")
def features() -> dict[str, schema_pb2.Feature]:
    return {f.name: f for f in load_schema().feature}


# --- The schema file itself ------------------------------------------------------


def test_schema_is_the_repository_file_and_has_exactly_the_contract_features(features):
    assert DEFAULT_SCHEMA_PATH.is_file()
    assert set(features) == set(REQUIRED + OPTIONAL)
    types = {name: schema_pb2.FeatureType.Name(f.type) for name, f in features.items()}
    assert types == {
        "image/encoded": "BYTES",
        "label": "INT",
        "lane_id": "INT",
        "device_id": "BYTES",
        "captured_at": "INT",
        "lighting": "BYTES",
    }


def test_label_and_lane_domains(features):
    label = features[contract.LABEL_KEY]
    assert label.WhichOneof("domain_info") == "int_domain"
    assert (label.int_domain.min, label.int_domain.max) == (0, contract.NUM_CLASSES - 1) == (0, 2)
    assert label.int_domain.is_categorical
    lane = features[contract.LANE_KEY]
    assert lane.WhichOneof("domain_info") == "int_domain"
    assert (lane.int_domain.min, lane.int_domain.max) == (contract.LANE_MIN, contract.LANE_MAX) == (1, 40)


def test_the_photo_is_an_image_so_tfdv_keeps_byte_sizes_not_categories(features):
    from tensorflow_data_validation.utils import schema_util

    assert features[contract.IMAGE_KEY].WhichOneof("domain_info") == "image_domain"
    # TFDV's basic stats then give byte sizes, and its top-k/uniques generators skip the photo bytes.
    assert [p.steps() for p in schema_util.get_bytes_features(load_schema())] == [(contract.IMAGE_KEY,)]


def test_device_id_has_no_domain_so_new_scanners_pass(features):
    # An inferred schema pins the devices it saw; the curated one must not.
    assert features[contract.DEVICE_KEY].WhichOneof("domain_info") is None


@pytest.mark.parametrize("name", REQUIRED)
def test_required_features_are_present_once_and_dense(features, name):
    feature = features[name]
    assert feature.presence.min_fraction == 1.0
    assert feature.presence.min_count == 1
    # shape [1] makes Transform parse the feature as a dense tensor.
    assert [d.size for d in feature.shape.dim] == [1]


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_features_are_marked_optional(features, name):
    feature = features[name]
    assert feature.presence.min_fraction == 0.0
    assert feature.presence.min_count == 0
    assert not feature.HasField("shape")  # an absent value cannot be dense
    assert (feature.value_count.min, feature.value_count.max) == (1, 1)


def test_environments_exclude_label_at_serving(features):
    schema = load_schema()
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert list(features[contract.LABEL_KEY].not_in_environment) == ["SERVING"]
    others = [f for name, f in features.items() if name != contract.LABEL_KEY]
    assert all(not f.not_in_environment and not f.in_environment for f in others)


def test_load_schema_accepts_an_explicit_path_and_names_a_missing_one(tmp_path):
    copy = tmp_path / "schema.pbtxt"
    copy.write_text(DEFAULT_SCHEMA_PATH.read_text())
    assert load_schema(copy) == load_schema()
    with pytest.raises(FileNotFoundError, match="nope.pbtxt"):
        load_schema(tmp_path / "nope.pbtxt")


# --- format_anomalies (pure) -------------------------------------------------------


def test_format_anomalies_gives_one_line_per_feature():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["lane_id"]
    info.short_description = "Out-of-range values"
    info.reason.add(short_description="Out-of-range values", description="Unexpectedly large value: 99.")
    assert format_anomalies(anomalies) == ["lane_id: Out-of-range values: Unexpectedly large value: 99."]
    assert format_anomalies(anomalies_pb2.Anomalies()) == []


# --- TFDV over real data -------------------------------------------------------------


def test_pack_output_validates_without_anomalies(packed_photos):
    out_dir, _ = packed_photos
    anomalies = validate_records(str(out_dir / "span-1" / "*.tfrecord*"))
    assert format_anomalies(anomalies) == []


def test_synth_output_validates_without_anomalies(tmp_path):
    from shelf_data import synth

    synth.generate(str(tmp_path), span=1, count=120, seed=3)
    anomalies = validate_records(str(tmp_path / "span-1" / "*.tfrecord*"))
    assert format_anomalies(anomalies) == []


def _example(**ints: int) -> bytes:
    feature = {
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff\xd8 jpeg"])),
        contract.DEVICE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"tc52"])),
    }
    for key, value in ints.items():
        feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_plain(path: Path, examples: list[bytes]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)
    return str(path)


def test_out_of_domain_label_and_lane_are_named_by_format_anomalies(tmp_path):
    # Written with tf.train.Example directly: make_example would refuse them.
    path = _write_plain(tmp_path / "bad.tfrecord", [_example(label=7, lane_id=3), _example(label=1, lane_id=99)])
    lines = format_anomalies(validate_records(path))

    assert len(lines) == 2
    assert lines[0].startswith("label: ") and "7" in lines[0]
    assert lines[1].startswith("lane_id: ") and "99" in lines[1]


def test_serving_data_without_label_is_valid_only_in_serving(tmp_path):
    path = _write_plain(tmp_path / "serving.tfrecord", [_example(lane_id=3), _example(lane_id=4)])
    assert format_anomalies(validate_records(path, environment="SERVING")) == []


def test_validate_records_names_an_empty_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        validate_records(str(tmp_path / "span-1" / "*.tfrecord*"))
