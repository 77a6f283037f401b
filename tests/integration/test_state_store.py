"""The Redis state store through a real server: same contract as memory://, plus the key layout."""

from __future__ import annotations

import asyncio

import pytest

from segstream.models.customer_state import fold_events
from segstream.streams.state import RedisStateStore
from tests.unit.streams.state_contract import (
    check_apply_is_idempotent_and_matches_batch,
    check_finalize_marks_done_and_counts_sales_once,
    random_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def make_store(embedded_stack):
    counter = iter(range(10**6))
    stores = []

    def make():
        # A fresh prefix per store keeps tests apart on the shared server.
        store = RedisStateStore.from_url(embedded_stack.redis_url, prefix=f"test{next(counter)}-{id(stores)}")
        stores.append(store)
        return store

    return make


def test_redis_store_matches_batch_features_under_shuffles_and_duplicates(make_store):
    asyncio.run(check_apply_is_idempotent_and_matches_batch(make_store))


def test_redis_store_finalize_contract(make_store):
    asyncio.run(check_finalize_marks_done_and_counts_sales_once(make_store))


def test_lua_fold_equals_python_fold_including_pruning(make_store):
    async def run():
        store = make_store()
        events = random_events(seed=3, n=600, customers=5)
        for start in range(0, len(events), 50):
            await store.apply(events[start : start + 50])
        states = fold_events((e.event_id, e.customer_id, e.ts_ms, e.amount_cents) for e in events)
        wm = await store.watermark()
        views = await store.view(sorted(states), wm)
        for cid, state in states.items():
            assert views[cid].aggregates == state.aggregates(wm)
        # Pruned buckets: no day field older than the retention horizon survives in Redis.
        raw = await store._redis.hgetall(store.keys.customer(sorted(states)[0]))
        days = [int(k.split(b":")[1]) for k in raw if k.startswith((b"d:", b"q:"))]
        last_day = int(raw[b"lt"]) // 86_400_000
        assert days and min(days) > last_day - 365
        await store.close()

    asyncio.run(run())


def test_dedupe_markers_expire(make_store):
    async def run():
        store = make_store()
        event = random_events(seed=5, n=1)[0]
        await store.apply([event])
        ttl = await store._redis.ttl(store.keys.event(event.event_id))
        assert 0 < ttl <= 7 * 24 * 3600
        await store.close()

    asyncio.run(run())


def test_key_layout_is_pinned():
    from segstream.streams.state.keys import KeySpace

    keys = KeySpace("shop")
    assert keys.customer("C1") == "shop:v1:c:C1"
    assert keys.event("e1") == "shop:v1:e:e1"
    assert keys.history("C1") == "shop:v1:h:C1"
    assert (keys.sales, keys.watermark, keys.due, keys.forecast) == (
        "shop:v1:sales",
        "shop:v1:wm",
        "shop:v1:due",
        "shop:v1:forecast",
    )
