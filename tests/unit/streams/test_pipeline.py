"""The batch pipeline on the in-process store with a recording producer."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.contract import EventLimits
from segstream.models.events import parse_event
from segstream.models.features import DAY_MS, FEATURE_NAMES
from segstream.streams.pipeline import BatchProcessor, PipelineConfig
from segstream.streams.state import Delivery, MemoryStateStore
from tests.unit.streams.fakes import ACTIVE, AT_RISK, T0, FakeProducer, event, holder, records


def run(coro):
    return asyncio.run(coro)


def processor(store=None, producer=None, **cfg):
    config = PipelineConfig(**{"inactivity_threshold_days": 30, **cfg})
    return BatchProcessor(store or MemoryStateStore(), producer or FakeProducer(), holder(), config)


def test_every_event_is_scored_with_its_input_and_first_evaluation_emits_a_change():
    async def go():
        proc = processor()
        result = await proc.process(
            records(
                event("e1", "alice", 0, 12.5, channel="web", extra_field={"x": 1}),
                event("e2", "bob", 1, 3.0),
                event("e3", "alice", 2, 7.5),
            )
        )
        return proc, result

    proc, result = run(go())
    assert (result.scored, result.dead_letters, result.duplicates, result.changes) == (3, 0, 0, 2)
    scored = proc.producer.values("transactions.scored")
    assert [s["event_id"] for s in scored] == ["e1", "e2", "e3"]
    first = scored[0]
    assert first["channel"] == "web" and first["extra_field"] == {"x": 1} and first["amount"] == 12.5
    assert first["segment"] == ACTIVE and first["segment_name"] == "Active"
    assert first["model_version"] == "v-test" and first["scored_at"].endswith("Z")
    changes = {c["customer_id"]: c for c in proc.producer.values("segment-changes")}
    alice = changes["alice"]
    assert alice["previous_segment"] is None and alice["previous_segment_name"] is None
    assert alice["segment"] == ACTIVE and alice["segment_name"] == "Active" and alice["cause"] == "purchase"
    assert alice["event_id"] == "e3" and alice["event_time_ms"] == T0 + 2 * DAY_MS  # latest event of the batch
    assert set(alice["features"]) == set(FEATURE_NAMES) and alice["features"]["frequency"] == 2.0
    assert alice["features"]["monetary"] == 20.0
    # keys are customer ids
    assert {k for t, k, _ in proc.producer.sent if t == "transactions.scored"} == {b"alice", b"bob"}


def test_state_written_before_return_sales_history_and_due():
    async def go():
        store = MemoryStateStore()
        proc = processor(store)
        await proc.process(records(event("e1", "alice", 0, 10.0), event("e2", "alice", 0.5, -4.0)))
        return store, await store.view(["alice"]), await store.daily_sales(), await store.history("alice")

    store, views, sales, history = run(go())
    assert views["alice"].segment.segment == ACTIVE and views["alice"].segment.model_version == "v-test"
    day = (T0) // DAY_MS
    assert sales == {day: {"total": 600, f"segment:{ACTIVE}": 600}}
    assert history[0]["segment"] == ACTIVE and history[0]["previous_segment"] is None


BAD = [
    (b"not json {", "not valid JSON"),
    (b"\xff\xfe\x00binary", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"customer_id": "c", "timestamp": T0, "amount": 1}).encode(), "missing field 'event_id'"),
    (json.dumps({"event_id": "x1", "customer_id": 5, "timestamp": T0, "amount": 1}).encode(), "customer_id"),
    (json.dumps({"event_id": "x2", "customer_id": "c", "timestamp": T0, "amount": "12"}).encode(), "amount"),
    (b'{"event_id": "x3", "customer_id": "c", "timestamp": 1735689600000, "amount": NaN}', "amount"),
    (b'{"event_id": "x4", "customer_id": "c", "timestamp": 1735689600000, "amount": Infinity}', "amount"),
    (b'{"event_id": "x5", "customer_id": "c", "timestamp": 1735689600000, "amount": 1e400}', "amount"),
    (json.dumps({"event_id": "x6", "customer_id": "c", "timestamp": "yesterday", "amount": 1}).encode(), "timestamp"),
    (
        json.dumps({"event_id": "x7", "customer_id": "c", "timestamp": T0, "amount": 1, "pad": "x" * 70_000}).encode(),
        "too large",
    ),
    (None, "empty message"),
    (b"", "not valid JSON"),
]


def test_bad_input_is_dead_lettered_with_reason_and_source_and_good_events_around_it_are_unaffected():
    values = []
    for i, (raw, _) in enumerate(BAD):
        values += [event(f"g{i}", f"c{i % 3}", i * 0.1, 1.0 + i), raw]

    async def go():
        proc = processor()
        recs = records(*values, partition=3)
        return proc, recs, await proc.process(recs)

    proc, recs, result = run(go())
    assert result.dead_letters == len(BAD) and result.scored == len(BAD)
    dead = proc.producer.values("dead-letters")
    assert len(dead) == len(BAD)
    for letter, (raw, reason), rec in zip(dead, BAD, recs[1::2], strict=True):
        assert reason in letter["error"], (letter["error"], reason)
        assert (letter["topic"], letter["partition"], letter["offset"]) == ("transactions", 3, rec.offset)
        if raw is None:
            assert letter["raw"] is None
        elif letter["raw_encoding"] == "text":
            assert letter["raw"].encode() == raw[: len(letter["raw"].encode())]
        else:
            assert letter["raw_encoding"] == "base64"
    assert dead[1]["raw_encoding"] == "base64"
    assert [s["event_id"] for s in proc.producer.values("transactions.scored")] == [f"g{i}" for i in range(len(BAD))]
    # a dead letter is valid JSON even though the input had NaN in it
    assert all(isinstance(d["error"], str) for d in dead)


def test_an_event_dated_past_the_allowed_skew_is_dead_lettered_and_leaves_the_watermark_alone():
    now_ms = int(time.time() * 1000)
    near, far = now_ms + 3_600_000, now_ms + 3 * 86_400_000  # an hour ahead; three days ahead
    values = [
        json.dumps({"event_id": "past", "customer_id": "a", "timestamp": T0, "amount": 5.0}).encode(),
        json.dumps({"event_id": "near", "customer_id": "b", "timestamp": near, "amount": 5.0}).encode(),
        json.dumps({"event_id": "far", "customer_id": "c", "timestamp": far, "amount": 5.0}).encode(),
    ]

    async def go(**cfg):
        proc = processor(**cfg)
        return proc, await proc.process(records(*values)), await proc.store.watermark()

    proc, result, watermark = run(go(limits=EventLimits(max_future_skew_ms=86_400_000)))
    assert (result.scored, result.dead_letters) == (2, 1)
    assert watermark == near
    [letter] = proc.producer.values("dead-letters")
    assert "hours ahead of the worker's clock (at most 24 hours are accepted)" in letter["error"]
    assert letter["error"].startswith("field 'timestamp': ") and json.loads(letter["raw"])["event_id"] == "far"
    # 0 turns the check off: the contract alone decides.
    proc, result, watermark = run(go(limits=EventLimits(max_future_skew_ms=0)))
    assert (result.scored, result.dead_letters, watermark) == (3, 0, far)


def test_duplicates_in_and_across_batches_are_skipped_and_change_nothing():
    async def go():
        store = MemoryStateStore()
        proc = processor(store)
        first = await proc.process(records(event("e1", "a", 0, 10.0), event("e1", "a", 0, 10.0)))
        before = (await store.view(["a"]))["a"].aggregates
        second = await proc.process(records(event("e1", "a", 0, 10.0), event("e2", "a", 1, 5.0)))
        third = await proc.process(records(event("e1", "a", 0, 10.0)))
        return proc, first, second, third, before, (await store.view(["a"]))["a"].aggregates, await store.daily_sales()

    proc, first, second, third, before, after, sales = run(go())
    assert (first.scored, first.duplicates) == (1, 1)
    assert (second.scored, second.duplicates) == (1, 1)
    assert (third.scored, third.duplicates, third.changes) == (0, 1, 0)
    assert before["purchases"] == 1 and after["purchases"] == 2 and after["net_cents"] == 1500
    assert sum(day["total"] for day in sales.values()) == 1500
    assert proc.stats.duplicates == 3 and proc.stats.processed == 2
    assert [s["event_id"] for s in proc.producer.values("transactions.scored")] == ["e1", "e2"]


def test_redelivery_after_a_crash_between_apply_and_finalize_is_scored_again_but_folded_once():
    async def go():
        store = MemoryStateStore()
        crashed = [parse_event(event("e1", "a", 0, 10.0))]
        applied = await store.apply(crashed)  # the worker died before finalize
        assert applied.deliveries == [Delivery.NEW]
        proc = processor(store)
        result = await proc.process(records(event("e1", "a", 0, 10.0)))
        return store, proc, result

    store, proc, result = run(go())
    assert result.scored == 1 and result.duplicates == 0
    view = run(store.view(["a"]))["a"]
    assert view.aggregates["purchases"] == 1
    assert sum(d["total"] for d in run(store.daily_sales()).values()) == 1000
    assert len(proc.producer.values("transactions.scored")) == 1


class FlakyStore(MemoryStateStore):
    """Fails like an unreachable Redis a few times before answering."""

    def __init__(self, apply_failures: int, finalize_failures: int, error: type[Exception]) -> None:
        super().__init__()
        self.apply_failures, self.finalize_failures, self.error = apply_failures, finalize_failures, error
        self.calls: list[str] = []

    async def apply(self, events, with_categories=False):
        self.calls.append("apply")
        if self.apply_failures:
            self.apply_failures -= 1
            raise self.error("Connection refused")
        return await super().apply(events, with_categories)

    async def finalize(self, batch):
        self.calls.append("finalize")
        if self.finalize_failures:
            self.finalize_failures -= 1
            raise self.error("Connection reset")
        return await super().finalize(batch)


def test_store_outage_backs_off_and_retries_without_dropping(caplog, monkeypatch):
    monkeypatch.setattr("segstream.streams.retry.asyncio.sleep", _no_sleep)
    store = FlakyStore(2, 2, redis.exceptions.ConnectionError)
    proc = processor(store)
    with caplog.at_level("WARNING", logger="segstream.worker"):
        result = run(proc.process(records(event("e1", "a", 0, 10.0), event("e2", "b", 0, 1.0))))
    assert result.scored == 2
    assert store.calls == ["apply"] * 3 + ["finalize"] * 3
    assert "retrying" in caplog.text and "nothing is dropped" in caplog.text
    assert run(store.view(["a", "b"])).keys() == {"a", "b"}


def test_a_non_transient_store_error_is_raised_not_swallowed():
    store = FlakyStore(1, 0, ValueError)
    with pytest.raises(ValueError):
        run(processor(store).process(records(event("e1", "a", 0, 10.0))))


def test_failed_deliveries_are_sent_again_before_finalize():
    producer = FakeProducer(fail_first=2)
    store = MemoryStateStore()
    result = run(processor(store, producer).process(records(event("e1", "a", 0, 10.0), event("e2", "b", 0, 1.0))))
    assert result.scored == 2
    scored = producer.values("transactions.scored")
    assert sorted(s["event_id"] for s in scored) == ["e1", "e2"]
    assert len(producer.values("segment-changes")) == 2


def test_a_return_after_a_long_silence_rescores_as_of_the_watermark():
    async def go():
        proc = processor()
        await proc.process(records(event("e1", "a", 0, 10.0), event("e2", "b", 0, 10.0)))
        await proc.process(records(event("e3", "b", 100, 10.0), event("e4", "a", 100, -2.0)))
        return proc

    proc = run(go())
    changes = proc.producer.values("segment-changes")
    latest = changes[-1]
    assert latest["customer_id"] == "a" and latest["previous_segment"] == ACTIVE and latest["segment"] == AT_RISK
    assert latest["previous_segment_name"] == "Active" and latest["segment_name"] == "At risk"
    assert math.isclose(latest["features"]["recency_days"], 100.0)


async def _no_sleep(_delay):
    return None


# -- batches in flight together: the next batch starts while the previous one still finalizes ----------------------


def _decisions(proc, store, customers):
    async def go():
        views = await store.view(customers)
        return {cid: (v.segment.segment, v.segment.pending, v.segment.pending_count) for cid, v in views.items()}

    return go()


def _outcome(proc):
    scored = [(s["event_id"], s["segment"]) for s in proc.producer.values("transactions.scored")]
    changes = [(c["customer_id"], c["previous_segment"], c["segment"], c["event_id"])
               for c in proc.producer.values("segment-changes")]  # fmt: skip
    return scored, changes


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 80)), min_size=1, max_size=4),
        min_size=1,
        max_size=8,
    ),
    hold=st.integers(1, 3),
)
def test_starting_batches_before_the_previous_finalized_decides_exactly_as_one_at_a_time(batches, hold):
    """Hysteresis and previous segments must see batches that are decided but not yet finalized."""
    day = 0
    values = []
    for b, batch in enumerate(batches):
        row = []
        for i, (cid, gap) in enumerate(batch):
            day += gap
            row.append(event(f"e{b}-{i}", cid, day))
        values.append(row)

    # Up to 2,560 days after T0 (2025): past today's clock, so the future-skew check is off here.
    async def one_at_a_time():
        proc = processor(hysteresis=hold, limits=EventLimits(max_future_skew_ms=0))
        for row in values:
            await proc.process(records(*row))
        return _outcome(proc), await _decisions(proc, proc.store, ["a", "b", "c"])

    async def all_in_flight():
        proc = processor(hysteresis=hold, limits=EventLimits(max_future_skew_ms=0))
        finishing = [await proc.start(records(*row)) for row in values]  # none awaited yet
        assert proc._unfinalized  # decided, not finalized: the next batches read these
        results = [await f for f in finishing]
        assert not proc._unfinalized
        assert [r.scored for r in results] == [len(row) for row in values]
        return _outcome(proc), await _decisions(proc, proc.store, ["a", "b", "c"])

    assert run(all_in_flight()) == run(one_at_a_time())


def test_exclusive_waits_for_every_started_batch_to_finalize():
    async def go():
        proc = processor()
        finishing = await proc.start(records(event("x1", "alice", 0)))
        assert not finishing.done()
        async with proc.exclusive:
            assert finishing.done()
            assert (await proc.store.view(["alice"]))["alice"].segment.segment == ACTIVE
            started = asyncio.ensure_future(proc.start(records(event("x2", "alice", 1))))
            await asyncio.sleep(0)
            assert not started.done()  # a new batch waits for the lock
        await (await started)

    run(go())
