"""Unit tests of components.tfx_hooks: the executors' writer swaps are scoped and loud."""

from __future__ import annotations

import types

import pytest
from tfx.components.example_gen import write_split
from tfx.components.transform import executor as transform_executor

from components import tfx_hooks
from components import transform as transform_component
from components.example_gen import executor as example_gen_executor

pytestmark = pytest.mark.unit


def test_rebound_lasts_for_the_block_and_is_undone_on_error():
    module = types.ModuleType("m")
    module.writer = "tfx"
    with tfx_hooks.rebound(module, "writer", "ours"):
        assert module.writer == "ours"
    assert module.writer == "tfx"
    with pytest.raises(RuntimeError, match="boom"), tfx_hooks.rebound(module, "writer", "ours"):
        raise RuntimeError("boom")
    assert module.writer == "tfx"


def test_a_name_tfx_no_longer_has_is_an_error_not_a_silent_no_op():
    with pytest.raises(AttributeError), tfx_hooks.rebound(types.ModuleType("m"), "WriteSplit", None):
        pass


def test_the_names_our_executors_swap_exist_in_this_tfx_and_are_tfx_s_own_outside_a_run():
    # Imported from TFX, so a TFX upgrade that moves them fails here rather than writing GZIP unnoticed.
    assert write_split.WriteSplit is example_gen_executor._TFX_WRITE_SPLIT
    assert transform_executor.TransformProcessor is transform_component._TfxProcessor
    assert issubclass(transform_component.PlainRecordsProcessor, transform_executor.TransformProcessor)
