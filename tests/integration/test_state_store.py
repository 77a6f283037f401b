"""The Redis state store through a real server: same contract as memory://, plus the key layout."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segstream.models.customer_state import CustomerState
from segstream.models.events import validate_payload
from segstream.models.features import DAY_MS
from segstream.models.preferences import event_split
from segstream.streams.state import Delivery, RedisStateStore, StateStoreError
from tests.unit.streams.state_contract import (
    T0,
    check_apply_is_idempotent_and_matches_batch,
    check_batches_fold_like_python,
    check_finalize_marks_done_and_counts_sales_once,
    random_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "worker"])
def make_store(embedded_stack, request):
    """Stores on the shared server, folding in Redis or in the worker (every test runs with both)."""
    counter = iter(range(10**6))
    stores = []

    def make(prefix=None, fold=None):
        # A fresh prefix per store keeps tests apart on the shared server; a given one is a second worker.
        store = RedisStateStore.from_url(embedded_stack.redis_url, prefix=prefix or f"test{next(counter)}-{id(stores)}",
                                         fold=fold or request.param)  # fmt: skip
        stores.append(store)
        return store

    return make


def test_redis_store_matches_batch_features_under_shuffles_and_duplicates(make_store):
    asyncio.run(check_apply_is_idempotent_and_matches_batch(make_store))


def test_redis_store_finalize_contract(make_store):
    asyncio.run(check_finalize_marks_done_and_counts_sales_once(make_store))


def test_the_fold_equals_python_fold_including_pruning(make_store):
    async def run():
        store = make_store()
        states = await check_batches_fold_like_python(store, random_events(seed=3, n=600, customers=5), 50)
        # Pruned buckets: no day field older than the retention horizon survives in Redis.
        raw = await store._redis.hgetall(store.keys.customer(sorted(states)[0]))
        days = [int(k.split(b":")[1]) for k in raw if k.startswith((b"d:", b"q:"))]
        last_day = int(raw[b"lt"]) // 86_400_000
        assert days and min(days) > last_day - 365
        await store.close()

    asyncio.run(run())


# Events over ~3 years (so buckets go stale and late events land on stale days), a few customers (so a batch
# holds several events of one customer, some on the same day), returns, and redeliveries of earlier ids.
EDGE_DAYS = (0, 1, 29, 30, 31, 60, 89, 90, 91, 120, 364, 365, 366, 395, 455, 730, 731, 1095)
DAY0 = T0 // DAY_MS * DAY_MS  # midnight UTC, so an offset's day is exactly its day number
event_specs = st.lists(
    st.tuples(
        st.integers(0, 3),  # customer
        # days whose differences hit the window edges (30, 90, 365 days) and the retention horizon exactly
        st.builds(lambda day, ms: day * DAY_MS + ms, st.sampled_from(EDGE_DAYS), st.integers(0, DAY_MS - 1)),
        st.integers(-50_000, 200_000),  # cents
        st.integers(0, 9),  # 0: a redelivery of an earlier event, if there is one
    ),
    min_size=10,
    max_size=150,
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(specs=event_specs, batch=st.integers(1, 12))
# a bucket exactly at the horizon when the next batch's event becomes the watermark: it must go
@example(specs=[(0, 730 * DAY_MS, 500, 1), (0, 1095 * DAY_MS, 500, 1)], batch=1)
def test_apply_replies_with_the_python_fold_after_every_batch(make_store, specs, batch):
    """What apply returns per batch, and the day buckets it leaves, are the Python fold's, event for event."""
    _check_apply_against_the_fold(make_store, specs, batch)


# Time moving forward a few days at a time (sometimes more, sometimes an event days late) over more than a
# year, the worker keeping each customer's fold between batches: stored days leave each window and the horizon.
forward_specs = st.lists(
    st.tuples(
        st.integers(0, 2),  # customer
        st.integers(0, 6),  # days after the previous event
        st.integers(0, DAY_MS - 1),
        st.integers(-50_000, 200_000),  # cents
        st.integers(0, 12),  # 0: a redelivery; 1: the event is 1-40 days late
        st.integers(1, 40),
    ),
    min_size=20,
    max_size=200,
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(steps=forward_specs, batch=st.integers(1, 8))
# a bucket one day inside the horizon when the latest event moves a day: it must go from the kept fold too
@example(steps=[(0, 0, 5, 500, 5, 1), (0, 364, 5, 700, 5, 1), (0, 1, 5, 900, 5, 1)], batch=1)
def test_window_sums_match_the_fold_as_time_moves_forward(make_store, steps, batch):
    """Batch after batch on the kept fold, the window sums and buckets are the Python fold's."""
    specs, day = [], 0
    for customer, gap, ms, cents, kind, late in steps:
        day += gap
        specs.append((customer, max(0, day - late if kind == 1 else day) * DAY_MS + ms, cents, kind))
    _check_apply_against_the_fold(make_store, specs, batch)


def test_a_hash_written_behind_the_workers_back_is_read_again(make_store):
    """A hash changed by something else than this worker (its kept fold is stale) is read whole again."""

    def event(i: int, cents: int) -> object:
        return validate_payload({"event_id": f"x{i}", "customer_id": "C1", "timestamp": DAY0 + 10 * DAY_MS + i,
                                 "amount": cents / 100})  # fmt: skip

    async def run():
        store = make_store()
        first, written_elsewhere, last = event(1, 10_000), event(2, 500), event(3, 2_000)
        await store.apply([first])
        key = store.keys.customer("C1")
        day = str(written_elsewhere.ts_ms // DAY_MS)
        for field_name, by in ((f"d:{day}", 500), (f"q:{day}", 1), ("p", 1), ("g", 500), ("n", 500)):
            await store._redis.hincrby(key, field_name, by)
        await store._redis.hset(key, "lt", str(written_elsewhere.ts_ms))
        result = await store.apply([last])
        state = CustomerState()
        for e in (first, written_elsewhere, last):
            state.add(e.event_id, e.ts_ms, e.amount_cents)
        assert dict(result.customers["C1"].aggregates) == state.aggregates(result.watermark_ms)
        await store.close()

    asyncio.run(run())


def _what_was_bought(i: int, cents: int) -> dict:
    """Every fifth event has no category, some one category, some an order split over two (lines)."""
    kind = i % 5
    if kind == 0:
        return {}
    if kind < 4:
        return {"category": "ABC"[kind - 1]}
    first = cents // 3
    return {"lines": [{"category": "A", "amount": first / 100}, {"category": "Z:z", "amount": (cents - first) / 100}]}


def _check_apply_against_the_fold(make_store, specs, batch):
    async def run():
        store = make_store()
        events = []
        for i, (customer, offset, cents, redeliver) in enumerate(specs):
            if redeliver == 0 and events:
                events.append(events[(i * 7) % len(events)])
                continue
            payload = {"event_id": f"p{i}", "customer_id": f"C{customer}", "timestamp": DAY0 + offset,
                       "amount": cents / 100, **_what_was_bought(i, cents)}  # fmt: skip
            events.append(validate_payload(payload))
        states: dict[str, CustomerState] = {}
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            with_categories = (start // batch) % 2 == 0
            result = await store.apply(chunk, with_categories=with_categories)
            for e in chunk:
                states.setdefault(e.customer_id, CustomerState()).add(
                    e.event_id, e.ts_ms, e.amount_cents, event_split(e.payload, e.amount_cents))
            assert set(result.customers) == {e.customer_id for e in chunk}
            for cid, view in result.customers.items():
                assert dict(view.aggregates) == states[cid].aggregates(result.watermark_ms)
                # A category whose net cents came back to 0 stays, in Redis (HINCRBY) as in the fold.
                assert view.categories == (states[cid].categories if with_categories else None)
        views = await store.view(sorted(states))
        for cid, state in states.items():
            assert views[cid].categories == state.categories
        for cid, state in states.items():
            raw = await store._redis.hgetall(store.keys.customer(cid))
            stored = {}
            for field_name, value in raw.items():
                kind, _, day = field_name.decode().partition(":")
                if day:
                    stored.setdefault(int(day), [0, 0])["dq".index(kind)] = int(value)
            assert stored == {day: bucket for day, bucket in state.days.items()}
        await store.close()

    asyncio.run(run())


def test_dedupe_markers_expire(make_store):
    async def run():
        store = make_store()
        event = random_events(seed=5, n=1)[0]
        await store.apply([event])
        ttl = await store._redis.ttl(store.keys.event(event.event_id, event.customer_id))
        assert 0 < ttl <= 7 * 24 * 3600
        await store.close()

    asyncio.run(run())


def test_key_layout_is_pinned():
    from segstream.models.state_keys import KeySpace, key_slot

    keys = KeySpace("shop")
    assert keys.shard_of("C1") == 3  # crc32("C1") % 16
    assert keys.customer("C1") == "shop:v2:{s3.20}:c:C1"
    assert keys.event("e1", "C1") == "shop:v2:{s3.20}:e:e1"  # in the shard of the event's customer
    assert keys.history("C1") == "shop:v2:{s3.20}:h:C1"
    assert keys.categories("C1") == "shop:v2:{s3.20}:k:C1"  # net cents per category
    assert keys.profile("C1") == "shop:v2:{s3.20}:a:C1"  # the latest customer profile
    assert (keys.sales(0), keys.watermark(15), keys.due(1), keys.sweep_lease(2)) == (
        "shop:v2:{s0.10}:sales",
        "shop:v2:{s15.42}:wm",
        "shop:v2:{s1.13}:due",
        "shop:v2:{s2.23}:sweep",
    )
    assert keys.cap(3, "winback", 20000) == "shop:v2:{s3.20}:cap:20000:winback"
    assert (keys.meta, keys.forecast, keys.forecast_lease) == (
        "shop:v2:meta", "shop:v2:forecast", "shop:v2:forecast-lease"
    )
    # Shard i's slot lies in the i-th sixteenth of the slots, so shards spread evenly over masters.
    assert [key_slot(root) * 16 // 16384 for root in keys.shard_roots] == list(range(16))
    assert KeySpace.customer_id_of(keys.customer("a:b{c}")) == "a:b{c}"


def _c1_event(i: int, day: int, cents: int) -> object:
    return validate_payload({"event_id": f"r{i}", "customer_id": "C1", "timestamp": DAY0 + day * DAY_MS + i,
                             "amount": cents / 100})  # fmt: skip


def _expected(*events) -> CustomerState:
    state = CustomerState()
    for e in events:
        state.add(e.event_id, e.ts_ms, e.amount_cents)
    return state


@pytest.mark.parametrize("make_store", ["worker"], indirect=True)
def test_a_worker_whose_kept_fold_went_stale_reads_the_customer_again(make_store):
    """Partitions moved away and back: the customer was folded by another worker in between."""

    async def run():
        a = make_store()
        b = make_store(a.keys.prefix)
        e1, e2, e3 = _c1_event(1, 0, 10_000), _c1_event(2, 3, 500), _c1_event(3, 40, 2_000)
        await a.apply([e1])
        assert a._folds.get(a.keys.customer("C1")) is not None  # kept
        await b.apply([e2])
        result = await a.apply([e3])
        assert dict(result.customers["C1"].aggregates) == _expected(e1, e2, e3).aggregates(result.watermark_ms)
        await b.close()
        await a.close()

    asyncio.run(run())


@pytest.mark.parametrize("make_store", ["worker"], indirect=True)
@pytest.mark.parametrize("same_event", [False, True], ids=["another-event", "the-same-event"])
def test_a_commit_that_lost_the_race_is_folded_again_and_nothing_twice(make_store, same_event):
    """Another worker commits into the customer between this worker's read and its commit (a rebalance)."""

    async def run():
        a = make_store()
        b = make_store(a.keys.prefix)
        e1, e2 = _c1_event(1, 0, 10_000), _c1_event(2, 5, 700)
        other = e2 if same_event else _c1_event(3, 6, 1_500)
        await a.apply([e1])
        read, raced, reads = a._read, [], []

        async def read_then_race(*args, **kwargs):
            reads.append(1)
            out = await read(*args, **kwargs)
            if not raced:
                raced.append(await b.apply([other]))
            return out

        a._read = read_then_race
        result = await a.apply([e2])
        assert raced and raced[0].deliveries[0] == Delivery.NEW
        assert len(reads) == 2  # the first commit was refused, the customer read and folded again
        # the same event, folded by the other worker first, is reported as applied, not folded again
        assert result.deliveries == [Delivery.APPLIED if same_event else Delivery.NEW]
        want = _expected(e1, e2) if same_event else _expected(e1, e2, other)
        assert dict(result.customers["C1"].aggregates) == want.aggregates(result.watermark_ms)
        views = await a.view(["C1"], result.watermark_ms)
        assert dict(views["C1"].aggregates) == want.aggregates(result.watermark_ms)
        await b.close()
        await a.close()

    asyncio.run(run())


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)  # the lease does not depend on the fold
def test_one_forecast_lease_for_all_workers_and_it_passes_on_when_its_holder_stops(make_store):
    async def run():
        a = make_store()
        b = make_store(a.keys.prefix)
        assert await a.claim_forecast(300) and not await b.claim_forecast(300)
        assert await a.claim_forecast(300)  # the holder renews
        await asyncio.sleep(0.4)  # the holder stopped renewing: its lease ran out
        assert await b.claim_forecast(300) and not await a.claim_forecast(300)
        assert await a._redis.get(a.keys.forecast_lease) == b._owner.encode()
        await b.close()
        await a.close()

    asyncio.run(run())


@pytest.mark.parametrize("make_store", ["worker"], indirect=True)
def test_workers_folding_in_redis_and_in_the_worker_can_share_customers(make_store):
    """A rolling switch of SEGSTREAM_REDIS_FOLD: the two folds take turns on the same customers, exactly."""

    async def run():
        in_worker = make_store()
        in_redis = make_store(in_worker.keys.prefix, fold="redis")
        events = random_events(seed=11, n=400, customers=6)
        for start in range(0, len(events), 25):
            store = in_worker if (start // 25) % 2 == 0 else in_redis
            await store.apply(events[start : start + 25])
        for store in (in_worker, in_redis):
            states = await check_batches_fold_like_python(store, events, 400)  # all repeats: nothing changes
            assert len(states) == 6
        await in_redis.close()
        await in_worker.close()

    asyncio.run(run())


def test_an_unknown_fold_is_refused(embedded_stack):
    with pytest.raises(StateStoreError, match="unknown fold 'lua'"):
        RedisStateStore.from_url(embedded_stack.redis_url, fold="lua")
