"""The span-window ExampleGen: TFX's ImportExampleGen whose ``range_config`` may name several spans."""

from __future__ import annotations

from typing import Any

from tfx.components.example_gen.import_example_gen import component as import_component
from tfx.dsl.components.base import executor_spec

from components.example_gen import driver, executor


class SpanWindowExampleGen(import_component.ImportExampleGen):
    """ImportExampleGen whose ``range_config`` may name several spans (see :mod:`components.example_gen`)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.Driver

    def __init__(self, *, max_bad_fraction: float | None = None, **kwargs: Any):
        """ImportExampleGen's arguments, plus ``max_bad_fraction`` recorded in ``bad_records.json``."""
        super().__init__(**kwargs)
        if max_bad_fraction is not None:
            self.exec_properties[executor.MAX_BAD_FRACTION_KEY] = float(max_bad_fraction)
