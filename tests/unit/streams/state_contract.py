"""Checks every StateStore implementation must pass; run against memory:// and a real Redis."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pandas as pd

from segstream.models.events import validate_payload
from segstream.models.features import AGGREGATE_FIELDS, DAY_MS, batch_features, features_from_aggregates
from segstream.streams.state import Delivery, Finalization, SegmentChange, SegmentRecord, StateStore

T0 = 1_700_000_000_000


def random_events(seed: int, n: int = 400, customers: int = 25):
    rng = random.Random(seed)
    events = []
    for i in range(n):
        amount = round(rng.uniform(-80, 400), 2) if rng.random() < 0.15 else round(rng.paretovariate(1.5) * 20, 2)
        events.append(
            validate_payload(
                {
                    "event_id": f"ev-{seed}-{i}",
                    "customer_id": f"C{rng.randrange(customers):03d}",
                    "timestamp": T0 + rng.randrange(900 * DAY_MS),
                    "amount": amount,
                }
            )
        )
    return events


def frame(events) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [e.event_id for e in events],
            "customer_id": [e.customer_id for e in events],
            "timestamp": pd.to_datetime([e.ts_ms for e in events], unit="ms", utc=True),
            "amount": [e.amount for e in events],
        }
    )


async def check_apply_is_idempotent_and_matches_batch(make_store: Callable[[], StateStore]) -> None:
    store = make_store()
    events = random_events(seed=7)
    delivered = events + random.Random(1).sample(events, 40)
    random.Random(2).shuffle(delivered)
    new = 0
    for start in range(0, len(delivered), 37):
        result = await store.apply(delivered[start : start + 37])
        new += sum(d is Delivery.NEW for d in result.deliveries)
    assert new == len(events)

    expected = batch_features(frame(events))
    as_of = expected.attrs["as_of_ms"]
    assert await store.watermark() == as_of
    views = await store.view(list(expected.index), as_of)
    agg = {name: np.array([views[c].aggregates[name] for c in expected.index]) for name in AGGREGATE_FIELDS}
    np.testing.assert_array_equal(features_from_aggregates(agg, as_of), expected.to_numpy())

    # A full redelivery changes nothing and reports APPLIED (never finalized) for every event.
    again = await store.apply(events)
    assert set(again.deliveries) == {Delivery.APPLIED}
    views2 = await store.view(list(expected.index), as_of)
    assert {c: v.aggregates for c, v in views2.items()} == {c: v.aggregates for c, v in views.items()}


async def check_finalize_marks_done_and_counts_sales_once(make_store: Callable[[], StateStore]) -> None:
    store = make_store()
    events = random_events(seed=11, n=30, customers=3)
    result = await store.apply(events)
    assert set(result.customers) == {e.customer_id for e in events}
    record = SegmentRecord(segment=2, pending=3, pending_count=1, model_version="v1", scored_as_of_ms=T0,
                           pending_since_ms=T0 - 7)  # fmt: skip
    change = SegmentChange(events[0].customer_id, None, 2, "v1", events[0].ts_ms, "purchase", events[0].event_id)
    sales = [(e.event_id, e.ts_ms // DAY_MS, 2, e.amount_cents) for e in events]
    batch = Finalization(
        segments={events[0].customer_id: record},
        changes=[change],
        sales=sales,
        done_event_ids=[e.event_id for e in events],
        next_check_ms={events[0].customer_id: T0 + 5},
        cooldowns={(events[0].customer_id, "win-back"): T0 + 3},
        caps={("win-back", T0 // DAY_MS): ["t1", "t2"]},
    )
    await store.finalize(batch)
    await store.finalize(batch)  # a retried finalize counts nothing twice
    daily = await store.daily_sales()
    assert sum(v["total"] for v in daily.values()) == sum(e.amount_cents for e in events)
    assert sum(v.get("segment:2", 0) for v in daily.values()) == sum(e.amount_cents for e in events)
    assert set((await store.apply(events)).deliveries) == {Delivery.DONE}
    view = (await store.view([events[0].customer_id]))[events[0].customer_id]
    assert view.segment == record
    history = await store.history(events[0].customer_id)
    assert history[0]["segment"] == 2 and history[0]["previous_segment"] is None
    assert await store.due_for_check(T0 + 5, 10) == [events[0].customer_id]
    assert await store.due_for_check(T0 + 4, 10) == []
    memory = await store.campaign_memory([events[0].customer_id, "nobody"], ["win-back", "other"], [T0 // DAY_MS])
    assert memory.last_fired_ms == {(events[0].customer_id, "win-back"): T0 + 3}
    assert memory.fired_per_day == {("win-back", T0 // DAY_MS): 2}  # finalized twice, each trigger counted once


async def check_batches_fold_like_python(store: StateStore, events, batch: int) -> dict:
    """Apply ``events`` ``batch`` at a time; the views as of the watermark equal the Python fold's.

    Returns the Python fold's states, for further checks.
    """
    from segstream.models.customer_state import fold_events

    for start in range(0, len(events), batch):
        await store.apply(events[start : start + batch])
    states = fold_events((e.event_id, e.customer_id, e.ts_ms, e.amount_cents) for e in events)
    wm = await store.watermark()
    views = await store.view(sorted(states), wm)
    assert {c: v.aggregates for c, v in views.items()} == {c: s.aggregates(wm) for c, s in states.items()}
    return states
