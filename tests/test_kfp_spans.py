"""Kubeflow tier: "the last K spans" as a runtime parameter of one compiled spec, replayed in the image venv.

The spec is compiled once with the config's default (the latest span); each
run then sets ``range_config`` to a rolling window. :mod:`support.kfp_replay` runs
the ImportExampleGen task as the KFP V2 launcher would: the ``preCacheCheck``
hook (our span driver, ``components.example_gen.driver``) and then the
executor, each a real process in the clean image venv. The open-source KFP
variant of the spec has no hook: the executor resolves the window itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import kfp_replay
from support.span_helpers import Mix, count_records, write_span

from pipeline import config as config_lib
from pipeline import kubeflow_runner

pytestmark = pytest.mark.kfp

COUNTS = {1: 12, 2: 15, 3: 18}
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
TASK = "ImportExampleGen"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, config_lib.PipelineConfig]:
    tmp = tmp_path_factory.mktemp("kfp-spans")
    for span, count in COUNTS.items():
        write_span(tmp / "data", span, Mix(count=count))
    config = config_lib.from_dict(
        {
            "name": "kfp-spans",
            "data": {"input_base": str(tmp / "default-data")},
            "push": {"bucket": str(tmp / "bucket")},
            "kubeflow": {"image": "shelf-audit:kfp-replay"},
        }
    )
    return tmp, config


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> kfp_replay.Image:
    return kfp_replay.cached_image(tmp_path_factory)


def _replay_example_gen(tmp: Path, spec: dict, image: kfp_replay.Image, name: str, range_config: str):
    replay = kfp_replay.Replay(
        spec,
        python=image.python,
        work_dir=tmp / name,
        env=IMAGE_ENV,
        forbidden_paths=[kfp_replay.REPO_ROOT],
    )
    result = replay.run({"input_base": str(tmp / "data"), "range_config": range_config}, only=[TASK])
    return result.records[TASK], result.artifact(TASK, "examples")


@pytest.mark.parametrize("range_config", ['{"rolling_range": {"num_spans": 2}}', "last:2"])
def test_last_two_spans_as_a_runtime_parameter(setup, image, range_config):
    tmp, config = setup
    spec = kubeflow_runner.compile_spec(config, str(tmp / "root"))
    assert spec["root"]["inputDefinitions"]["parameters"]["range_config"]["defaultValue"] == ""  # compiled: latest
    record, examples = _replay_example_gen(tmp, spec, image, f"vertex-{len(range_config)}", range_config)
    # The hook ran our driver, which ran TFX's for the newest span and widened it to the window.
    assert record.pre_cache_check["command"][:3] == ["python", "-m", "components.example_gen.driver"]
    values = record.pre_cache_check["output"]["parameterValues"]
    assert values["span"] == 3
    assert json.loads(values["range_config"])["static_range"] == {"start_span_number": 2, "end_span_number": 3}
    assert json.loads(values["input_config"])["splits"][0]["pattern"] == "{span-2/*.tfrecord*,span-3/*.tfrecord*}"
    assert examples["metadata"]["spans"] == "2,3"
    assert count_records(examples["uri"]) == COUNTS[2] + COUNTS[3]


def test_open_source_kfp_spec_resolves_the_window_in_the_executor(setup, image):
    tmp, config = setup
    spec = kubeflow_runner.compile_spec(config, str(tmp / "root"), backend=kubeflow_runner.KFP)
    record, examples = _replay_example_gen(tmp, spec, image, "oss", '{"rolling_range": {"num_spans": 2}}')
    assert record.pre_cache_check is None
    assert "no driver resolved the spans" in record.stderr
    assert examples["metadata"]["spans"] == "2,3"
    assert count_records(examples["uri"]) == COUNTS[2] + COUNTS[3]
