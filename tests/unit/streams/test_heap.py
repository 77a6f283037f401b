"""Garbage-collector pauses: timed per generation, and the heap frozen once the model is loaded."""

from __future__ import annotations

import gc
import weakref

from segstream.streams.heap import COLLECTOR_THRESHOLDS, GcPauses, settle_heap


def test_pauses_are_counted_per_generation_and_stop_when_uninstalled():
    pauses = GcPauses().install()
    try:
        pauses.install()  # a second install must not double-count
        gc.collect(2)
        gc.collect(0)
        assert pauses.collections[2] == 1 and pauses.collections[0] == 1
        assert pauses.seconds[2] > 0 and pauses.longest_s >= pauses.seconds[2]
    finally:
        pauses.uninstall()
    gc.collect()
    assert pauses.collections[2] == 1


def test_settle_heap_freezes_what_is_alive_and_the_next_call_reclaims_frozen_cycles():
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector can free it

    thresholds = gc.get_threshold()
    try:
        node = Node()
        alive = weakref.ref(node)
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        del node
        gc.collect()
        assert alive() is not None  # frozen: ordinary collections leave it alone
        settle_heap()  # unfreezes first, so its full collection frees the cycle
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
