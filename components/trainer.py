"""TFX's Trainer with ``epochs`` as its own execution property, so a Kubeflow run can set it.

KFP V2 can fill a top-level execution property from a runtime parameter, but
not a value nested inside the JSON of ``custom_config``. This component
therefore carries ``epochs`` beside ``custom_config``; its executor writes it
into ``custom_config["training"]["epochs"]`` and then runs TFX's own
GenericExecutor unchanged, so ``run_fn`` sees one complete training config.
Afterwards it settles the heap (:func:`components.heap.settle`), so the
stages after it in the same process do not walk the Trainer's leftovers.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from components import ArtifactDict, ExecProperties, heap
from shelf_data import splits

EPOCHS_KEY = "epochs"
CUSTOM_CONFIG_KEY = standard_component_specs.CUSTOM_CONFIG_KEY


class TrainerSpec(standard_component_specs.TrainerSpec):
    """TFX's TrainerSpec plus ``epochs``."""

    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS, EPOCHS_KEY: ExecutionParameter(type=int)}


def with_epochs(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """``exec_properties`` without ``epochs``, its value moved into ``custom_config["training"]``."""
    props = dict(exec_properties)
    epochs = props.pop(EPOCHS_KEY, None)
    if epochs is None:
        return props
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1. Received epochs={epochs}")
    custom = json_utils.loads(props.get(CUSTOM_CONFIG_KEY) or "{}")
    custom.setdefault("training", {})["epochs"] = int(epochs)
    props[CUSTOM_CONFIG_KEY] = json_utils.dumps(custom)
    return props


class Executor(trainer_executor.GenericExecutor):
    """GenericExecutor after :func:`with_epochs`."""

    def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict, exec_properties: ExecProperties) -> None:
        super().Do(input_dict, output_dict, with_epochs(exec_properties))
        # What training left behind (graphs, Keras state) would be walked by every later full collection.
        heap.settle()


class Trainer(base_component.BaseComponent):
    """Train with a module-path ``run_fn``; ``epochs`` may be a runtime parameter."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        run_fn: str,
        custom_config: dict[str, Any],
        epochs: int | data_types.RuntimeParameter,
    ):
        """Construct the component.

        Args:
            examples: Transform's ``transformed_examples``.
            transform_graph: Transform's graph (exported with the model).
            schema: the curated schema.
            run_fn: module path of the training function.
            custom_config: JSON-serializable settings handed to ``run_fn``.
            epochs: epochs to train; overrides ``custom_config["training"]["epochs"]``.
        """
        spec = TrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            # Fit on train; early stopping, the LR schedule and the best checkpoint watch
            # validation. The eval split is left for the gate.
            train_args=trainer_pb2.TrainArgs(splits=[splits.TRAIN]),
            eval_args=trainer_pb2.EvalArgs(splits=[splits.VALIDATION]),
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            epochs=epochs,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)
