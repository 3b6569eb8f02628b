"""Freezing start-up objects: later full collections walk only what the process made since."""

import gc
import weakref

import pytest

from core.heap import freeze_startup_objects


@pytest.fixture
def unfrozen_afterwards():
    yield
    gc.unfreeze()  # give the rest of the test session its ordinary collector back


def test_start_up_objects_leave_the_collectors_sight_and_garbage_is_collected_first(unfrozen_afterwards):
    class Cycle:
        pass

    garbage = Cycle()
    garbage.self = garbage  # only a full collection frees a reference cycle
    garbage_ref = weakref.ref(garbage)
    del garbage
    tracked_before = len(gc.get_objects())

    freeze_startup_objects()

    assert garbage_ref() is None  # collected, not frozen for good
    assert gc.get_freeze_count() > tracked_before // 2
    assert len(gc.get_objects()) < tracked_before // 10  # what a full collection still walks
    kept = Cycle()
    kept.self = kept
    assert any(o is kept for o in gc.get_objects())  # objects made afterwards are collected as usual
