"""The inactivity sweep and rescore-all on the in-process store."""

from __future__ import annotations

import asyncio

from segstream.models.features import DAY_MS
from segstream.streams.pipeline import BatchProcessor, PipelineConfig
from segstream.streams.state import MemoryStateStore
from segstream.streams.sweep import rescore_all, sweep_once
from tests.unit.streams.fakes import ACTIVE, AT_RISK, T0, FakeProducer, event, holder, records


def setup(hold=1):
    store, producer, models = MemoryStateStore(), FakeProducer(), holder()
    config = PipelineConfig(hysteresis=hold, inactivity_threshold_days=30)
    proc = BatchProcessor(store, producer, models, config)
    return store, producer, models, config, proc


def test_a_silent_customer_becomes_at_risk_with_no_new_event():
    async def go():
        store, producer, models, config, proc = setup()
        await proc.process(records(event("a1", "alice", 0), event("b1", "bob", 0)))
        # only bob keeps buying; the watermark moves on
        await proc.process(records(event("b2", "bob", 20)))
        early = await sweep_once(store, models.active, producer, config, lock=proc.lock)
        await proc.process(records(event("b3", "bob", 70)))
        late = await sweep_once(store, models.active, producer, config, lock=proc.lock)
        return store, producer, early, late

    store, producer, early, late = asyncio.run(go())
    assert early.evaluated == 0  # nobody due before day 30
    assert late.evaluated == 1 and late.changes == 1  # alice: due at day 30, watermark at 70
    change = producer.values("segment-changes")[-1]
    assert change["customer_id"] == "alice" and change["cause"] == "inactivity" and change["event_id"] is None
    assert (change["previous_segment"], change["segment"]) == (ACTIVE, AT_RISK)
    assert change["event_time_ms"] == T0 + 70 * DAY_MS
    assert change["features"]["recency_days"] == 70.0
    view = asyncio.run(store.view(["alice"]))["alice"]
    assert view.segment.segment == AT_RISK and view.segment.scored_as_of_ms == T0 + 70 * DAY_MS
    # rescheduled: not due again until the watermark passes day 100
    assert asyncio.run(store.due_for_check(T0 + 99 * DAY_MS, 10)) == []


def test_sweep_respects_hysteresis():
    async def go():
        store, producer, models, config, proc = setup(hold=2)
        await proc.process(records(event("a1", "alice", 0), event("b1", "bob", 0)))
        await proc.process(records(event("b2", "bob", 70)))
        first = await sweep_once(store, models.active, producer, config, lock=proc.lock)
        pending = (await store.view(["alice"]))["alice"].segment
        await proc.process(records(event("b3", "bob", 110)))
        second = await sweep_once(store, models.active, producer, config, lock=proc.lock)
        return first, pending, second, producer

    first, pending, second, producer = asyncio.run(go())
    assert first.evaluated == 1 and first.changes == 0
    assert pending.segment == ACTIVE and pending.pending == AT_RISK and pending.pending_count == 1
    assert second.changes == 1
    assert producer.values("segment-changes")[-1]["segment"] == AT_RISK


def test_rescore_all_evaluates_everyone_as_of_the_watermark():
    async def go():
        store, producer, models, config, proc = setup()
        await proc.process(records(event("a1", "alice", 0), event("b1", "bob", 0)))
        await proc.process(records(event("c1", "carol", 80)))
        return await rescore_all(store, models.active, producer, config), store

    result, store = asyncio.run(go())
    assert result.evaluated == 3 and result.watermark_ms == T0 + 80 * DAY_MS
    views = asyncio.run(store.view(["alice", "bob", "carol"]))
    assert {c: v.segment.segment for c, v in views.items()} == {"alice": AT_RISK, "bob": AT_RISK, "carol": ACTIVE}
    assert result.changes == 2
