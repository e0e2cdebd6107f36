"""Component tier: ImportExampleGen over a window of spans (components.example_gen: window, driver, executor).

Tiny spans 1, 2 and 4 (3 is missing) under one input base. The window is
resolved against the files with TFX's own span matching; the local driver,
the Kubeflow ``preCacheCheck`` driver and the executor (when no driver ran)
all read exactly the spans of the window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.span_helpers import Mix, count_records, write_span

from components.example_gen import component, executor
from shelf_data import bad_records, spans, window

pytestmark = pytest.mark.component

COUNTS = {1: 7, 2: 9, 4: 11}
SPAN_4 = "span-4/*.tfrecord*"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Spans 1, 2 and 4 (no 3), plus a file that is not a span (an empty span folder stops a run: test_bad_records)."""
    root = tmp_path_factory.mktemp("spans") / "photos"
    for span, count in COUNTS.items():
        write_span(root, span, Mix(count=count))
    (root / "README.txt").write_text("not a span")
    return root


def _resolve(data: Path, text: str) -> window.Resolution:
    return window.resolve(str(data), window.input_config(), spans.parse(text))


def test_spans_present_uses_tfx_span_matching(data):
    assert window.spans_present(str(data), window.input_config().splits[0]) == [1, 2, 4]


def test_a_span_folder_without_a_number_is_named_not_skipped(tmp_path):
    # TFX's own driver fails the same way on it: the file is named rather than silently ignored.
    write_span(tmp_path, 1, Mix(count=2))
    (tmp_path / "span-x").mkdir()
    (tmp_path / "span-x" / "part-0.tfrecord.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Cannot find span number from .*span-x/part-0\.tfrecord\.gz"):
        window.spans_present(str(tmp_path), window.input_config().splits[0])


@pytest.mark.parametrize(
    ("text", "chosen"),
    [("latest", (4,)), ("last:2", (2, 4)), ("last:5", (1, 2, 4)), ("2-3", (2,)), ("1-4", (1, 2, 4)), ("1", (1,))],
)
def test_resolve_reads_the_window_of_the_spans_present(data, text, chosen):
    resolution = _resolve(data, text)
    assert resolution.spans == chosen
    assert resolution.span == chosen[-1]
    assert resolution.patterns == tuple(f"span-{s}/*.tfrecord*" for s in chosen)
    assert json.loads(resolution.range_config_json)["static_range"] == {
        "start_span_number": chosen[0],
        "end_span_number": chosen[-1],
    }
    assert resolution.spans_text == ",".join(map(str, chosen))


def test_one_span_resolves_exactly_as_tfx_does(data):
    """Same pattern, span and fingerprint as TFX's FileBasedInputProcessor given the one-span static range."""
    from tfx.components.example_gen import input_processor
    from tfx.proto import range_config_pb2
    from tfx.utils import proto_utils

    static = proto_utils.json_to_proto(spans.static_json([4]), range_config_pb2.RangeConfig())
    processor = input_processor.FileBasedInputProcessor(str(data), window.input_config().splits, static)
    span, version = processor.resolve_span_and_version()
    resolution = _resolve(data, "latest")
    assert (resolution.span, resolution.version) == (span, version)
    assert resolution.fingerprint == processor.get_input_fingerprint(span, version)
    assert resolution.pattern == processor.get_pattern_for_span_version(window.SPLIT_PATTERN, span, version)


def test_a_window_fingerprint_covers_every_span(data):
    two = _resolve(data, "last:2").fingerprint
    assert two.startswith("span 2: split:single_split,num_files:2") and "; span 4: split:single_split" in two
    assert two != _resolve(data, "latest").fingerprint


def test_nothing_to_read_names_the_folder_the_selection_and_the_spans_present(data, tmp_path):
    with pytest.raises(ValueError, match=r"no span matches the selection 3; spans present: 1-2, 4 \(under .*photos"):
        _resolve(data, "3")
    nothing = rf"no span found under the data root {tmp_path}: nothing matches {tmp_path}/span-\{{SPAN\}}"
    with pytest.raises(ValueError, match=nothing):
        window.resolve(str(tmp_path), window.input_config(), spans.parse("latest"))


def test_pattern_lists_round_trip_and_are_refused_when_ambiguous():
    listed = window.encode_patterns(["span-2/*.gz", "span-4/*.gz"])
    assert listed == "{span-2/*.gz,span-4/*.gz}"
    assert window.decode_patterns(listed) == ["span-2/*.gz", "span-4/*.gz"]
    assert window.decode_patterns("span-4/*.gz") == ["span-4/*.gz"]
    # An unresolved TFX pattern is never mistaken for a list.
    assert window.decode_patterns("{SPAN},x/{VERSION}") == ["{SPAN},x/{VERSION}"]
    assert window.is_unresolved("span-{SPAN}/*") and not window.is_unresolved(listed)
    with pytest.raises(ValueError, match="cannot list split patterns holding"):
        window.encode_patterns(["a,b/*", "c/*"])


def _exec_properties(data: Path, range_config: str) -> dict:
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    output = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ]
        )
    )
    return {
        "input_base": str(data),
        "input_config": proto_utils.proto_to_json(window.input_config()),
        "output_config": proto_utils.proto_to_json(output),
        "range_config": range_config,
        "output_data_format": example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FileFormat.FORMAT_TFRECORDS_GZIP,
    }


def test_executor_resolves_the_window_itself_when_no_driver_ran(data, tmp_path):
    """Open-source KFP never runs preCacheCheck: the executor gets {SPAN} and a rolling range."""
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    props = _exec_properties(data, '{"rolling_range": {"num_spans": 2}}')
    executor.Executor().Do({}, {"examples": [examples]}, props)
    assert count_records(examples.uri) == COUNTS[2] + COUNTS[4]
    assert examples.get_int_custom_property("span") == 4
    assert examples.get_string_custom_property("spans") == "2,4"
    assert examples.get_string_custom_property("input_fingerprint").startswith("span 2: ")
    # The data-quality step read every record in a DoFn: all kept, counted per split and class.
    report = bad_records.read_bad_records(examples.uri)
    assert report["read"] == COUNTS[2] + COUNTS[4] and report["dropped"] == 0 and report["records"] == []
    assert sum(sum(by_label.values()) for by_label in report["labels"].values()) == report["read"]
    assert {split: c["read"] for split, c in report["by_split"].items()} == {
        split: count_records_in(examples.uri, split) for split in ("train", "eval")
    }


def count_records_in(uri: str, split: str) -> int:
    """Records of one split of an Examples artifact."""
    import tensorflow as tf

    from shelf_model.features import compression_type

    files = [str(p) for p in Path(uri, f"Split-{split}").glob("*")]
    assert files and all(f.endswith(executor.EXAMPLES_SUFFIX) for f in files), files  # plain, not TFX's GZIP
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type=compression_type(files)))


def test_local_pipeline_reads_every_span_of_the_window(data, tmp_path):
    """A one-node LocalDagRunner run: TFX compiles our driver into the IR and runs it before the executor."""
    from tfx import v1 as tfx
    from tfx.orchestration import metadata
    from tfx.proto import example_gen_pb2, range_config_pb2
    from tfx.utils import proto_utils

    range_json = window.resolve(str(data), window.input_config(), spans.parse("last:2")).range_config_json
    assert json.loads(range_json)["static_range"] == {"start_span_number": 2, "end_span_number": 4}
    props = _exec_properties(data, range_json)
    gen = component.SpanWindowExampleGen(
        input_base=str(data),
        input_config=window.input_config(),
        output_config=proto_utils.json_to_proto(props["output_config"], example_gen_pb2.Output()),
        range_config=proto_utils.json_to_proto(range_json, range_config_pb2.RangeConfig()),
    ).with_id("ImportExampleGen")
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite"))
    dag = tfx.dsl.Pipeline(
        pipeline_name="spans",
        pipeline_root=str(tmp_path / "root"),
        components=[gen],
        metadata_connection_config=connection,
        beam_pipeline_args=[],
    )
    tfx.orchestration.LocalDagRunner().run(dag)
    with metadata.Metadata(connection) as m:
        [artifact] = m.store.get_artifacts_by_type("Examples")
        [execution] = m.store.get_executions()
    assert count_records(artifact.uri) == COUNTS[2] + COUNTS[4]
    assert artifact.custom_properties["span"].int_value == 4  # TFX's span property: the newest
    assert artifact.custom_properties["spans"].string_value == "2,4"
    recorded = execution.custom_properties
    assert json.loads(recorded["input_config"].string_value)["splits"][0]["pattern"] == (
        "{span-2/*.tfrecord*,span-4/*.tfrecord*}"
    )
    assert json.loads(recorded["range_config"].string_value) == json.loads(range_json)


def _executor_input(data: Path, tmp_path: Path, range_config: str):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    props = _exec_properties(data, range_config)
    types = {"output_data_format": "NUMBER_INTEGER", "output_file_format": "NUMBER_INTEGER"}
    inputs_spec = json_format.ParseDict(
        {"parameters": {k: {"parameterType": types.get(k, "STRING")} for k in props}},
        pipeline_spec_pb2.ComponentInputsSpec(),
    )
    examples = {"name": "examples", "type": {"schemaTitle": "tfx.Examples"}, "uri": str(tmp_path / "ex")}
    executor_input = json_format.ParseDict(
        {
            "inputs": {"parameterValues": props},
            "outputs": {
                "artifacts": {"examples": {"artifacts": [examples]}},
                "outputFile": str(tmp_path / "output_metadata.json"),
            },
        },
        pipeline_spec_pb2.ExecutorInput(),
    )
    return executor_input, inputs_spec


@pytest.mark.parametrize("range_config", ['{"rolling_range": {"num_spans": 2}}', "last:2", "2-4"])
def test_kfp_driver_turns_the_runtime_parameter_into_the_window(data, tmp_path, range_config):
    from components.example_gen import driver

    executor_input, inputs_spec = _executor_input(data, tmp_path, range_config)
    resolution = driver.run_driver(executor_input, inputs_spec)
    assert resolution.spans == (2, 4)
    output = json.loads((tmp_path / "output_metadata.json").read_text())
    values = output["parameterValues"]
    assert values["span"] == 4  # written by TFX's own driver, for the newest span
    assert json.loads(values["input_config"])["splits"][0]["pattern"] == "{span-2/*.tfrecord*,span-4/*.tfrecord*}"
    assert json.loads(values["range_config"])["static_range"] == {"start_span_number": 2, "end_span_number": 4}
    assert values["input_fingerprint"] == resolution.fingerprint
    [artifact] = output["artifacts"]["examples"]["artifacts"]
    assert artifact["metadata"]["spans"] == "2,4"
    assert artifact["metadata"]["custom:span"] == 4


def test_kfp_driver_refuses_a_bad_runtime_parameter_by_name(data, tmp_path):
    from components.example_gen import driver

    executor_input, inputs_spec = _executor_input(data, tmp_path, "newest")
    with pytest.raises(ValueError, match=r"Received range_config='newest'"):
        driver.run_driver(executor_input, inputs_spec)
    assert not (tmp_path / "output_metadata.json").exists()
