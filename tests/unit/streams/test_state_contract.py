"""The state-store contract, checked on the in-process store (the Redis store runs the same checks in
tests/integration/test_state_store.py through a real server)."""

from __future__ import annotations

import asyncio

from segstream.streams.state import Delivery, MemoryStateStore
from tests.unit.streams.state_contract import (
    check_apply_is_idempotent_and_matches_batch,
    check_finalize_marks_done_and_counts_sales_once,
)


def test_memory_store_matches_batch_features_under_shuffles_and_duplicates():
    asyncio.run(check_apply_is_idempotent_and_matches_batch(MemoryStateStore))


def test_memory_store_finalize_contract():
    asyncio.run(check_finalize_marks_done_and_counts_sales_once(MemoryStateStore))


def test_delivery_values_are_stable():
    assert [d.value for d in Delivery] == [1, 2, 3]
