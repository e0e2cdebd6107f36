"""TFLite metadata written and read with the flatbuffers runtime alone (shelf_tflite.metadata).

``tests/data/tasks_metadata.json`` is the tasks variant's metadata as TFLite
Support 0.4.4's image-classifier writer produced it and its displayer printed
it; MediaPipe's displayer prints the same (tests/test_mediapipe_tasks.py).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import pytest
from ai_edge_litert import schema_py_generated as schema

from shelf_tflite import metadata as md

pytestmark = pytest.mark.unit

GOLDEN = json.loads((Path(__file__).parent / "data" / "tasks_metadata.json").read_text())
LABELS_TXT = b"ok\nmisplaced\ndamaged\n"


def _tiny_model() -> bytes:
    """A TFLite flatbuffer with one subgraph and one tensor, built without TensorFlow."""
    import flatbuffers

    tensor = schema.TensorT()
    tensor.name = "image"
    tensor.shape = [1, 4, 4, 3]
    tensor.type = schema.TensorType.UINT8
    tensor.buffer = 1
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = [tensor], [0], [0], []
    weights = schema.BufferT()
    weights.data = list(range(16))
    model = schema.ModelT()
    model.version, model.description = 3, "tiny"
    model.subgraphs, model.buffers = [subgraph], [schema.BufferT(), weights]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_encode_then_decode_gives_the_same_metadata():
    buffer = md.encode(GOLDEN)
    assert buffer[4:8] == b"M001"
    assert md.decode(buffer) == GOLDEN


def test_populate_embeds_metadata_and_labels_and_keeps_the_model():
    model = _tiny_model()
    populated = md.populate(model, GOLDEN, {"labels.txt": LABELS_TXT})
    read = md.read_metadata(populated)
    assert read == {"metadata": GOLDEN, "associated_files": ["labels.txt"], "labels": ["ok", "misplaced", "damaged"]}
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(populated, 0))
    assert [entry.name.decode() for entry in parsed.metadata] == ["TFLITE_METADATA"]
    assert parsed.description.decode() == "tiny" and list(parsed.buffers[1].data) == list(range(16))
    assert parsed.subgraphs[0].tensors[0].name.decode() == "image"
    with zipfile.ZipFile(io.BytesIO(populated)) as archive:
        (info,) = archive.infolist()
        assert info.compress_type == zipfile.ZIP_STORED and info.date_time == (1980, 1, 1, 0, 0, 0)


def test_populating_again_replaces_and_gives_the_same_bytes():
    model = _tiny_model()
    first = md.populate(model, GOLDEN, {"labels.txt": LABELS_TXT})
    assert md.populate(model, GOLDEN, {"labels.txt": LABELS_TXT}) == first
    renamed = copy.deepcopy(GOLDEN)
    renamed["name"] = "another"
    again = md.populate(first, renamed, {"labels.txt": LABELS_TXT})
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(again, 0))
    assert [entry.name.decode() for entry in parsed.metadata] == ["TFLITE_METADATA"]
    assert md.read_metadata(again)["metadata"]["name"] == "another"
    assert md.read_metadata(again)["associated_files"] == ["labels.txt"]


def test_min_parser_version_is_filled_in():
    without = {key: value for key, value in GOLDEN.items() if key != "min_parser_version"}
    populated = md.populate(_tiny_model(), without, {"labels.txt": LABELS_TXT})
    assert md.read_metadata(populated)["metadata"]["min_parser_version"] == "1.0.0"


def test_a_model_without_metadata_reads_empty():
    assert md.read_metadata(_tiny_model()) == {"metadata": {}, "associated_files": [], "labels": []}


def test_associated_file_names_are_found_at_any_depth():
    assert md.associated_file_names(GOLDEN) == ["labels.txt"]
    assert md.associated_file_names({"name": "x"}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(colour="RGB"), r"ModelMetadata \(ModelMetadata\) has no field colour"),
        (
            lambda m: m["subgraph_metadata"][0]["input_tensor_metadata"][0]["content"]["content_properties"].update(
                color_space="CMYK"
            ),
            r"color_space must be one of UNKNOWN, RGB, GRAYSCALE\. Received 'CMYK'",
        ),
        (
            lambda m: m["subgraph_metadata"][0]["input_tensor_metadata"][0]["content"].update(
                content_properties_type="Nope"
            ),
            r"content_properties_type must name a ContentProperties table\. Received 'Nope'",
        ),
    ],
)
def test_metadata_that_does_not_fit_the_schema_is_refused(change, message):
    bad = copy.deepcopy(GOLDEN)
    change(bad)
    with pytest.raises(ValueError, match=message):
        md.encode(bad)


def test_files_must_match_what_the_metadata_names():
    with pytest.raises(ValueError, match=r"names associated files \['labels.txt'\] but \[\] were given"):
        md.populate(_tiny_model(), GOLDEN, {})
    with pytest.raises(ValueError, match=r"but \['extra.txt', 'labels.txt'\] were given"):
        md.populate(_tiny_model(), GOLDEN, {"labels.txt": LABELS_TXT, "extra.txt": b""})


def test_not_a_model_or_not_metadata_is_named():
    with pytest.raises(ValueError, match="not a TFLite model: identifier b'M001'"):
        md.read_metadata(md.encode(GOLDEN))
    with pytest.raises(ValueError, match="not a TFLite metadata buffer"):
        md.decode(_tiny_model())
