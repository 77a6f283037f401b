"""Key layout v2 on a real Redis Cluster: the store contract, the fold, sweep leases and the v1 migration."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from segstream.models.state_keys import KeySpace, key_slot
from segstream.redis_clients import sync_client
from segstream.streams.state import Finalization, RedisStateStore, SegmentChange, SegmentRecord
from segstream.streams.state.migrate import migrate_v1_to_v2
from tests.unit.streams.state_contract import (
    T0,
    check_apply_is_idempotent_and_matches_batch,
    check_batches_fold_like_python,
    check_finalize_marks_done_and_counts_sales_once,
    random_events,
)


@pytest.fixture(params=["redis", "worker"])
def make_cluster_store(redis_cluster, request):
    """Stores on the cluster, folding in Redis or in the worker (every test runs with both)."""
    stores: list[RedisStateStore] = []

    def make(prefix: str | None = None, shards: int = 16) -> RedisStateStore:
        store = RedisStateStore.from_url(redis_cluster.url, prefix=prefix or f"t-{uuid.uuid4().hex[:8]}", shards=shards,
                                         fold=request.param)  # fmt: skip
        stores.append(store)
        return store

    return make


def test_store_contract_on_a_cluster(make_cluster_store):
    asyncio.run(check_apply_is_idempotent_and_matches_batch(make_cluster_store))
    asyncio.run(check_finalize_marks_done_and_counts_sales_once(make_cluster_store))


def test_every_master_holds_customers_and_each_script_stays_in_one_slot(make_cluster_store, redis_cluster):
    async def run() -> tuple[KeySpace, int]:
        store = make_cluster_store()
        states = await check_batches_fold_like_python(store, random_events(seed=21, n=800, customers=120), 100)
        await store.close()
        return store.keys, len(states)

    keys, customers = asyncio.run(run())
    per_master = {}
    for port in redis_cluster.masters():
        node = redis.Redis(port=port)
        per_master[port] = sum(1 for _ in node.scan_iter(keys.customer_pattern, count=1000))
        node.close()
    assert sum(per_master.values()) == customers and all(per_master.values()), per_master
    for cid in ("C001", "C{x}", "a:b"):
        assert key_slot(keys.customer(cid)) == key_slot(keys.history(cid)) == key_slot(keys.event("e", cid))


def test_one_worker_sweeps_a_shard_however_many_ask(make_cluster_store):
    async def run() -> None:
        prefix = f"lease-{uuid.uuid4().hex[:6]}"
        workers = [make_cluster_store(prefix) for _ in range(3)]
        events = random_events(seed=8, n=300, customers=60)
        await workers[0].apply(events)
        due = {e.customer_id: T0 for e in events}
        done = [e.event_id for e in events]
        await workers[0].finalize(Finalization({}, [], [], done, next_check_ms=due))
        claimed = [await w.claim_due(T0, 1000) for w in workers]
        # The first to ask takes every free lease; the others get nothing while it holds them.
        assert sorted(claimed[0]) == sorted(due) and claimed[1] == claimed[2] == []
        # Renewing is the holder's right only, and the unleased view still lists everyone.
        assert sorted(await workers[0].claim_due(T0, 1000)) == sorted(due)
        assert sorted(await workers[1].due_for_check(T0, 1000)) == sorted(due)
        for w in workers:
            await w.close()

    asyncio.run(run())


def _write_v1(client, prefix: str, store_keys: KeySpace, customers: list[str], source_prefix_keys) -> None:
    """Lay out state as release v1 stored it (``{prefix}:v1:c:<id>`` etc.), from a v2 store's contents."""
    v1 = f"{prefix}:v1"
    src = source_prefix_keys
    for cid in customers:
        client.hset(f"{v1}:c:{cid}", mapping=client.hgetall(src.customer(cid)))
        history = client.lrange(src.history(cid), 0, -1)
        if history:
            client.rpush(f"{v1}:h:{cid}", *history)
        client.set(f"{v1}:e:ev-{cid}", "2", ex=3600)
    sales: dict[bytes, int] = {}
    for shard in range(src.shards):
        for field, cents in client.hgetall(src.sales(shard)).items():
            sales[field] = sales.get(field, 0) + int(cents)
        for member, at in client.zrange(src.due(shard), 0, -1, withscores=True):
            client.zadd(f"{v1}:due", {member: at})
    if sales:
        client.hset(f"{v1}:sales", mapping=sales)
    client.set(f"{v1}:wm", max(int(client.get(src.watermark(s)) or 0) for s in range(src.shards)))
    client.sadd(f"{v1}:cap:19700:win-back", "t1", "t2", "t3")
    client.expire(f"{v1}:cap:19700:win-back", 3600)
    client.set(f"{v1}:forecast", '{"rows": []}')


def test_v1_state_migrates_to_v2_on_one_redis_and_onto_a_cluster(embedded_stack, redis_cluster):
    """A v1 store (built field for field from a store's contents) migrates to v2 and reads back the same."""

    async def build(prefix: str) -> tuple[RedisStateStore, list[str]]:
        store = RedisStateStore.from_url(embedded_stack.redis_url, prefix=prefix)
        events = random_events(seed=31, n=400, customers=40)
        await store.apply(events)
        records = {e.customer_id: SegmentRecord(2, None, 0, "v1", T0, 0) for e in events}
        changes = [SegmentChange(c, None, 2, "v1", T0, "purchase", None) for c in sorted(records)[:5]]
        sales = [(e.event_id, e.ts_ms // 86_400_000, 2, e.amount_cents) for e in events]
        await store.finalize(Finalization(records, changes, sales, [e.event_id for e in events],
                                          next_check_ms=dict.fromkeys(records, T0 + 9)))  # fmt: skip
        return store, sorted(records)

    async def snapshot(store: RedisStateStore, customers: list[str]) -> tuple:
        views = await store.view(customers)
        return (
            await store.watermark(),
            {c: (v.aggregates, v.segment) for c, v in views.items()},
            await store.daily_sales(),
            {c: await store.history(c) for c in customers},
            sorted(await store.due_for_check(T0 + 9, 10_000)),
        )

    async def run() -> None:
        tag = uuid.uuid4().hex[:6]
        original, customers = await build(f"orig-{tag}")
        expected = await snapshot(original, customers)
        await original.close()
        client = redis.Redis.from_url(embedded_stack.redis_url)
        for prefix, target in ((f"one-{tag}", client), (f"clu-{tag}", sync_client(redis_cluster.url))):
            _write_v1(client, prefix, KeySpace(prefix), customers, KeySpace(f"orig-{tag}"))
            report = migrate_v1_to_v2(client, target, prefix, 16, drop_v1=target is not client)
            assert report.customers == 40 and report.histories == 5 and report.cap_sets == 1 and report.forecast
            assert report.markers_not_copied == 40
            if target is not client:  # --drop-v1 removed the copied v1 keys
                assert not list(client.scan_iter(f"{prefix}:v1:*"))
            url = embedded_stack.redis_url if target is client else redis_cluster.url
            migrated = RedisStateStore.from_url(url, prefix=prefix)
            assert await snapshot(migrated, customers) == expected
            memory = await migrated.campaign_memory(customers[:1], ["win-back"], [19700])
            assert memory.fired_per_day == {("win-back", 19700): 3}
            await migrated.close()
            with pytest.raises(Exception, match="already under"):
                _write_v1(client, prefix, KeySpace(prefix), customers, KeySpace(f"orig-{tag}"))
                migrate_v1_to_v2(client, target, prefix, 16)
        client.close()

    asyncio.run(run())
