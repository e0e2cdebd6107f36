"""Unit tests of components.heap: collections paused while importing, survivors frozen."""

from __future__ import annotations

import gc
import weakref

import pytest

from components import heap

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_gc():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()  # this worker's later tests collect as usual
    gc.enable() if enabled else gc.disable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_no_collection_inside_the_block_then_garbage_freed_and_the_rest_frozen():
    gc.unfreeze()
    collections: list[int] = []
    callback = lambda phase, info: collections.append(info["generation"]) if phase == "start" else None  # noqa: E731
    gc.callbacks.append(callback)
    try:
        with heap.frozen_after_imports():
            assert not gc.isenabled()
            garbage = [_Cycle() for _ in range(5000)]  # well over the collector's thresholds
            gone = weakref.ref(garbage[0])
            kept = _Cycle()
            del garbage
            assert collections == [] and gone() is not None  # cycles wait for the collector
        assert collections == [2]  # one full collection, after the block
    finally:
        gc.callbacks.remove(callback)
    assert gc.isenabled()
    assert gone() is None  # the garbage cycles were freed, not frozen
    assert gc.get_freeze_count() > 0 and kept.me is kept


def test_the_collector_stays_off_if_it_was_off_and_an_error_still_freezes():
    gc.disable()
    with pytest.raises(ImportError), heap.frozen_after_imports():
        raise ImportError("no such module")
    assert not gc.isenabled() and gc.get_freeze_count() > 0


def test_settle_collects_then_freezes():
    gc.unfreeze()
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    del cycle
    heap.settle()
    assert gone() is None and gc.get_freeze_count() > 0
