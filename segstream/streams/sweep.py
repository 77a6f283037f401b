"""The inactivity sweep: re-score customers whose recency grew past a threshold without a new event.

Every evaluation schedules the customer's next check at ``as_of + threshold`` (event time). The sweep asks
the store which customers are due as of the watermark, re-scores them as of the watermark and emits the
changes with ``cause = "inactivity"``: a customer who stops buying can become "At risk" with no new event.
Time here is event time (the watermark), never the wall clock, so replays and live traffic behave alike.

:func:`rescore_all` evaluates every known customer as of the watermark: run it after a replay (the parity
test does) or after a model change, so every stored segment reflects the final state.

With several worker replicas each shard of the schedule is swept by the replica holding its lease (see
:meth:`~segstream.streams.state.base.StateStore.claim_due`), so a due customer is evaluated once; a replica
that dies passes its shards on when its leases run out, and a change it sent but did not finalize is sent
again with the same ``change_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.campaign_triggers import PendingCampaigns, decide_triggers
from segstream.streams.evaluate import days_to_ms, evaluate
from segstream.streams.monitoring import WorkerStats
from segstream.streams.outputs import OutputBatch, Producer, change_payload
from segstream.streams.pipeline import PipelineConfig
from segstream.streams.retry import retry_transient
from segstream.streams.state.base import Finalization, StateStore

log = logging.getLogger("segstream.worker")

# Larger than any real event time: "every customer with a check scheduled".
_END_OF_TIME_MS = 2**62


@dataclass
class SweepResult:
    """What one sweep pass did."""

    evaluated: int = 0
    changes: int = 0
    watermark_ms: int = 0


async def evaluate_customers(
    ids: list[str],
    store: StateStore,
    model: ActiveModel,
    producer: Producer,
    config: PipelineConfig,
    as_of_ms: int,
    stats: WorkerStats | None,
    *,
    cause: str = "inactivity",
) -> SweepResult:
    """Re-score some customers as of T with no new event, emit their changes and write their records.

    The caller holds the batch lock (``processor.exclusive``). ``cause`` is copied to the changes:
    ``inactivity`` for the sweep, ``profile`` after a new customer profile.
    """
    views = await retry_transient(lambda: store.view(ids, as_of_ms), f"read {len(ids)} customers to re-score")
    profiles = None
    if model.needs_attributes:
        profiles = await retry_transient(lambda: store.profiles(list(views)), f"read {len(views)} profiles")
    if config.sweep_page_delay_s and cause == "inactivity":
        await asyncio.sleep(config.sweep_page_delay_s)
    evaluations = evaluate(
        views,
        model,
        as_of_ms,
        hold=config.hysteresis,
        cause=cause,
        recheck_after_ms=days_to_ms(config.inactivity_threshold_days),
        dwell_ms=days_to_ms(config.dwell_days),
        profiles=profiles,
    )
    out = OutputBatch(producer)
    changes = [ev.change for ev in evaluations if ev.change is not None]
    for change in changes:
        payload = change_payload(change, model.names, descriptions=model.descriptions)
        await out.send(config.changes_topic, change.customer_id.encode(), payload)
    # The sweep runs with every batch finalized (the batch lock), so nothing is pending.
    campaigns = config.rules.campaigns(model) if config.rules is not None else []
    triggers = await decide_triggers(changes, campaigns, store, PendingCampaigns(), model)
    if triggers.records:
        await out.send_many(config.triggers_topic, triggers.records)
    await out.wait_all()
    batch = Finalization(
        segments={ev.customer_id: ev.record for ev in evaluations},
        changes=changes,
        sales=[],
        done_event_ids=[],
        next_check_ms={ev.customer_id: ev.next_check_ms for ev in evaluations},
        cooldowns=triggers.cooldowns,
        caps=triggers.caps,
    )
    await retry_transient(lambda: store.finalize(batch), f"write {len(evaluations)} sweep evaluations")
    if stats is not None:
        stats.note_triggers(len(triggers.records), triggers.suppressed)
        stats.note_changes(changes)
        if cause == "inactivity":
            stats.inactivity_changes += len(changes)
            stats.swept_customers += len(evaluations)
        else:
            stats.profile_changes += len(changes)
        for ev in evaluations:
            stats.mix.observe(ev.customer_id, ev.record.segment if ev.record.segment is not None else -1)
    return SweepResult(len(evaluations), len(changes), as_of_ms)


async def sweep_once(
    store: StateStore,
    model: ActiveModel,
    producer: Producer,
    config: PipelineConfig,
    *,
    lock: AbstractAsyncContextManager[Any],
    stats: WorkerStats | None = None,
    page_size: int = 250,
    max_pages: int = 400,
) -> SweepResult:
    """Re-score every customer due as of the watermark (in pages, each under the batch lock).

    Returns:
        Totals over the pages. Customers still due after ``max_pages`` wait for the next pass.
    """
    total = SweepResult()
    for _ in range(max_pages):
        # Small pages: each holds the batch lock, so a big page would stall scoring (and its latency) for as
        # long as it takes to re-score the page.
        async with lock:
            started = time.perf_counter()
            watermark = await retry_transient(store.watermark, "read the watermark")
            ids = await retry_transient(partial(store.claim_due, watermark, page_size), "list due customers")
            if not ids:
                break
            part = await evaluate_customers(ids, store, model, producer, config, watermark, stats)
            if stats is not None:
                stats.add_stage("sweep", time.perf_counter() - started)
        total.evaluated += part.evaluated
        total.changes += part.changes
        total.watermark_ms = watermark
        if len(ids) < page_size:
            break
    if stats is not None:
        stats.sweeps += 1
    if total.evaluated:
        log.info("inactivity sweep: %d customers re-scored, %d changes", total.evaluated, total.changes)
    return total


async def rescore_all(
    store: StateStore,
    model: ActiveModel,
    producer: Producer,
    config: PipelineConfig,
    *,
    lock: asyncio.Lock | None = None,
    page_size: int = 5000,
    stats: WorkerStats | None = None,
) -> SweepResult:
    """Evaluate every customer that has been evaluated before, as of the current watermark.

    Changes are emitted with ``cause = "inactivity"`` (nothing but time moved since their last evaluation).
    """
    lock = lock or asyncio.Lock()
    async with lock:
        watermark = await retry_transient(store.watermark, "read the watermark")
        ids = await retry_transient(lambda: store.due_for_check(_END_OF_TIME_MS, 2**31 - 1), "list customers")
    total = SweepResult(watermark_ms=watermark)
    for start in range(0, len(ids), page_size):
        async with lock:
            page = ids[start : start + page_size]
            part = await evaluate_customers(page, store, model, producer, config, watermark, stats)
        total.evaluated += part.evaluated
        total.changes += part.changes
    return total
