"""Redis memory per customer, measured by loading many customers through the real state store.

Each synthetic customer gets ``events_per_customer`` purchases on different days, folded in by
:meth:`RedisStateStore.apply` and then finalized the way the worker finalizes a batch (segment record,
the first segment change in the history list, sales, done markers, the inactivity due time), in big
batches. ``INFO memory`` ``used_memory`` before and after, divided by the customers, is the figure; a
sample of ``MEMORY USAGE`` splits it into the customer hash, the history list and the per-event dedupe
keys (which expire: their TTL is reported). All keys of the run are deleted afterwards.

On a Redis Cluster ``used_memory`` and the key count are summed over the masters (the replicas hold copies).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from segstream.bench.redis_nodes import RedisNodes, sum_masters
from segstream.models.events import Event
from segstream.models.features import DAY_MS, day_index
from segstream.models.state_keys import DEFAULT_SHARDS, KeySpace

_BASE_TS_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_SAMPLE = 200


def _batch_events(start: int, stop: int, per_customer: int, run: str) -> list[Event]:
    events = []
    for i in range(start, stop):
        cid = f"M{i:08d}"
        for j in range(per_customer):
            ts = _BASE_TS_MS + (j * 17 + i % 13) * DAY_MS + (i % 86_400) * 1000
            cents = 500 + (i * 7919 + j * 104729) % 20_000
            events.append(Event(f"{run}-{i}-{j}", cid, ts, cents / 100, cents, {}))
    return events


async def _finalize_like_worker(store: Any, events: list[Event], applied: Any) -> None:
    from segstream.streams.state import Finalization, SegmentChange, SegmentRecord

    wm = applied.watermark_ms
    segments, changes, due = {}, [], {}
    for cid in applied.customers:
        seg = hash(cid) % 5
        segments[cid] = SegmentRecord(seg, None, 0, "bench-memory", wm)
        changes.append(SegmentChange(cid, None, seg, "bench-memory", wm, "purchase", None))
        due[cid] = wm + 90 * DAY_MS
    sales = [(e.event_id, day_index(e.ts_ms), hash(e.customer_id) % 5, e.amount_cents) for e in events]
    await store.finalize(Finalization(segments, changes, sales, [e.event_id for e in events], due))


def _used_memory(nodes: RedisNodes) -> int:
    return int(sum_masters((n.role, int(n.client.info("memory")["used_memory"])) for n in nodes.nodes) or 0)


def _key_count(nodes: RedisNodes) -> int:
    return int(sum_masters((n.role, int(n.client.dbsize())) for n in nodes.nodes) or 0)


async def _delete_prefix(client: Any, prefix: str) -> int:
    deleted = 0
    async for keys in _scan_chunks(client, f"{prefix}:*"):
        deleted += await client.unlink(*keys)
    return deleted


async def _scan_chunks(client: Any, pattern: str, chunk: int = 5000) -> Any:
    keys: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=chunk):
        keys.append(key)
        if len(keys) >= chunk:
            yield keys
            keys = []
    if keys:
        yield keys


def sample_keys(keys: KeySpace, customers: int, run: str) -> list[tuple[str, str, str]]:
    """(customer hash, history list, first dedupe marker) of up to ``_SAMPLE`` loaded customers, spread evenly."""
    step = max(1, customers // _SAMPLE)
    out = []
    for i in list(range(0, customers, step))[:_SAMPLE]:
        cid = f"M{i:08d}"
        out.append((keys.customer(cid), keys.history(cid), keys.event(f"{run}-{i}-0", cid)))
    return out


async def _sample_usage(client: Any, keys: KeySpace, customers: int, per_customer: int, run: str) -> dict[str, Any]:
    sample = sample_keys(keys, customers, run)
    pipe = client.pipeline(transaction=False)
    for names in sample:
        for name in names:
            pipe.memory_usage(name)
    usage = await pipe.execute()
    ttl = await client.ttl(sample[0][2])

    def mean(values: list[Any]) -> float:
        nums = [int(v) for v in values if v is not None]
        return sum(nums) / len(nums) if nums else 0.0

    return {
        "customer_hash_bytes": mean(usage[0::3]),
        "history_list_bytes": mean(usage[1::3]),
        "dedupe_key_bytes": mean(usage[2::3]),
        "dedupe_keys_per_customer": per_customer,
        "dedupe_ttl_s": int(ttl),
    }


async def measure_redis_memory(
    redis_url: str,
    client_kwargs: dict[str, Any],
    prefix: str,
    customers: int = 1_000_000,
    events_per_customer: int = 1,
    batch_customers: int = 2500,
    progress: Any = None,
    shards: int = DEFAULT_SHARDS,
) -> dict[str, Any]:
    """Load ``customers`` customers through the state store and report Redis bytes per customer.

    Args:
        redis_url: The Redis to measure (its other keys are left alone).
        client_kwargs: ``RedisSettings.client_kwargs()``.
        prefix: A key prefix used by nothing else (deleted afterwards).
        customers: How many customers to load.
        events_per_customer: Purchases per customer (on different days).
        batch_customers: Customers per apply/finalize round trip.
        progress: Called with (customers loaded, total) now and then.
        shards: The store's shard count (as the worker's).

    Returns:
        ``bytes_per_customer`` and its parts, ``used_memory_before/after``, load rate, the dedupe TTL.
    """
    from segstream.redis_clients import async_client
    from segstream.streams.state import RedisStateStore

    client = async_client(redis_url, **{**client_kwargs, "socket_timeout": 120})
    nodes = RedisNodes(redis_url, client_kwargs)
    store = RedisStateStore(client, prefix=prefix, shards=shards)
    run = "m"
    try:
        before = _used_memory(nodes)
        keys_before = _key_count(nodes)
        started = time.perf_counter()

        async def load(events: list[Event]) -> None:
            await _finalize_like_worker(store, events, await store.apply(events))

        # Double-buffered: the next batch is built in Python while Redis runs the current one.
        pending: asyncio.Future[None] | None = None
        for start in range(0, customers, batch_customers):
            stop = min(start + batch_customers, customers)
            events = _batch_events(start, stop, events_per_customer, run)
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(load(events))
            if progress is not None and (stop // batch_customers) % 40 == 0:
                progress(stop, customers)
        if pending is not None:
            await pending
        load_s = time.perf_counter() - started
        after = _used_memory(nodes)
        keys_after = _key_count(nodes)
        parts = await _sample_usage(client, store.keys, customers, events_per_customer, run)
        return {
            "customers": customers,
            "events_per_customer": events_per_customer,
            "bytes_per_customer": (after - before) / customers,
            "used_memory_before": before,
            "used_memory_after": after,
            "servers": len(nodes.masters),
            "keys_added": keys_after - keys_before,
            "load_seconds": load_s,
            "load_events_per_s": customers * events_per_customer / load_s if load_s > 0 else None,
            **parts,
        }
    finally:
        await _delete_prefix(client, prefix)
        await client.aclose()
        nodes.close()


def redis_memory(redis_url: str, client_kwargs: dict[str, Any], prefix: str, **kwargs: Any) -> dict[str, Any]:
    """Synchronous :func:`measure_redis_memory`."""
    return asyncio.run(measure_redis_memory(redis_url, client_kwargs, prefix, **kwargs))
