"""The span window's drivers: :class:`Driver` on local runs, ``python -m components.example_gen.driver`` on Kubeflow.

:class:`Driver` is TFX's file-based ExampleGen driver, resolving a window of spans (:mod:`shelf_data.window`)
instead of one. :func:`run_driver` is the Kubeflow V2 ``preCacheCheck`` hook that
:func:`pipeline.kubeflow_runner.compile_spec` puts in place of TFX's, with the same arguments: it resolves
the ``range_config`` runtime parameter to the spans present, runs TFX's driver unchanged for the newest of
them, then widens what TFX wrote to the whole window.

See docs/kubeflow.md#why-the-span-selection-is-one-json-string for the steps and what is widened.
"""

from __future__ import annotations

import copy
from typing import Any

from absl import app, logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen import utils
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver as tfx_kfp_driver
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from shelf_data import spans, window

INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
RANGE_CONFIG_KEY = standard_component_specs.RANGE_CONFIG_KEY
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY

# The module TFX puts in the hook, and ours.
TFX_DRIVER_MODULE = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
DRIVER_MODULE = "components.example_gen.driver"


def resolve_exec_properties(exec_properties: dict[str, Any]) -> tuple[example_gen_pb2.Input, window.Resolution]:
    """The input config and span window of ExampleGen's (unresolved) execution properties.

    Raises:
        ValueError: a bad ``range_config`` value, or see :func:`shelf_data.window.resolve`.
    """
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[INPUT_CONFIG_KEY], config)
    selection = spans.from_value(exec_properties.get(RANGE_CONFIG_KEY))
    return config, window.resolve(exec_properties[INPUT_BASE_KEY], config, selection)


def resolved_exec_properties(resolution: window.Resolution, config: example_gen_pb2.Input) -> dict[str, Any]:
    """ExampleGen's execution properties after resolution (what TFX's driver sets, plus range_config)."""
    resolved = copy.deepcopy(config)
    resolved.splits[0].pattern = resolution.pattern
    return {
        INPUT_CONFIG_KEY: proto_utils.proto_to_json(resolved),
        RANGE_CONFIG_KEY: resolution.range_config_json,
        utils.SPAN_PROPERTY_NAME: resolution.span,
        utils.VERSION_PROPERTY_NAME: resolution.version,
        utils.FINGERPRINT_PROPERTY_NAME: resolution.fingerprint,
    }


class Driver(tfx_driver.FileBasedDriver):
    """TFX's file-based ExampleGen driver, resolving a window of spans instead of one."""

    _resolution: window.Resolution | None = None

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info: Any, component_info: Any):
        """Overrides TFX's: the window's spans, pattern list, newest span, version and fingerprint."""
        del pipeline_info, component_info
        config, self._resolution = resolve_exec_properties(exec_properties)
        exec_properties.update(resolved_exec_properties(self._resolution, config))
        return exec_properties

    def run(self, execution_info: Any) -> Any:
        """TFX's driver output plus the ``spans`` custom property on the Examples artifact."""
        result = super().run(execution_info)
        assert self._resolution is not None
        for artifact in result.output_artifacts[standard_component_specs.EXAMPLES_KEY].artifacts:
            artifact.custom_properties[window.SPANS_PROPERTY].string_value = self._resolution.spans_text
        return result


def _set_parameter(executor_input: pipeline_spec_pb2.ExecutorInput, name: str, text: str) -> None:
    """Set a string input parameter in both the 2.1 and the deprecated map (whichever the launcher filled)."""
    executor_input.inputs.parameter_values[name].string_value = text
    if name in executor_input.inputs.parameters:
        executor_input.inputs.parameters[name].string_value = text


def run_driver(
    executor_input: pipeline_spec_pb2.ExecutorInput,
    component_inputs_spec: pipeline_spec_pb2.ComponentInputsSpec | None = None,
) -> window.Resolution:
    """Resolve the span window, run TFX's driver for its newest span, write the widened ExecutorOutput.

    Raises:
        ValueError: a bad ``range_config``, or no span present in the window (the message names both).
    """
    exec_properties = kubeflow_v2_entrypoint_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, component_inputs_spec
    )
    config, resolution = resolve_exec_properties(exec_properties)
    logging.info("range_config %r -> spans %s", exec_properties.get(RANGE_CONFIG_KEY), resolution.spans_text)

    newest = copy.deepcopy(executor_input)
    _set_parameter(newest, RANGE_CONFIG_KEY, spans.static_json([resolution.span]))
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    tfx_kfp_driver._run_driver(newest, component_inputs_spec)  # noqa: SLF001 - TFX's driver, unchanged

    path = executor_input.outputs.output_file
    output = pipeline_spec_pb2.ExecutorOutput()
    with fileio.open(path, "r") as f:
        json_format.Parse(f.read(), output)
    properties = resolved_exec_properties(resolution, config)
    for key in (INPUT_CONFIG_KEY, RANGE_CONFIG_KEY, utils.FINGERPRINT_PROPERTY_NAME):
        output.parameter_values[key].string_value = properties[key]
    for artifact in output.artifacts[standard_component_specs.EXAMPLES_KEY].artifacts:
        artifact.metadata[utils.FINGERPRINT_PROPERTY_NAME] = resolution.fingerprint
        artifact.metadata[window.SPANS_PROPERTY] = resolution.spans_text
    with fileio.open(path, "w") as f:
        f.write(json_format.MessageToJson(output, sort_keys=True))
    return resolution


def main(args) -> None:  # noqa: ANN001 - absl passes TFX's parsed flags
    """Entry point: the same flags as TFX's driver."""
    executor_input = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(args.json_serialized_invocation_args, executor_input, ignore_unknown_fields=True)
    inputs_spec = None
    if getattr(args, "json_serialized_inputs_spec_args", None):
        inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
        json_format.Parse(args.json_serialized_inputs_spec_args, inputs_spec, ignore_unknown_fields=True)
    run_driver(executor_input, inputs_spec)


if __name__ == "__main__":
    app.run(main, flags_parser=tfx_kfp_driver._parse_flags)  # noqa: SLF001
