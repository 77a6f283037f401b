"""One micro-batch, end to end: validate, fold into state, score, emit, finalize.

Order (what makes state exactly-once and outputs at-least-once):

1. parse every message; a bad one becomes a dead letter (with its topic/partition/offset) and the batch
   goes on;
2. ``store.apply``: one atomic, idempotent round trip folds the new events in and returns each touched
   customer's aggregates as of the watermark; repeats of an already finished ``event_id`` come back DONE
   and are skipped (counted as duplicates);
3. score every touched customer once, vectorised, as of the watermark, with the model that is active at
   the start of the batch; hysteresis decides which segments change;
4. send ``transactions.scored`` for every event, ``segment-changes`` for every change and the dead
   letters, without waiting per send, then wait for all deliveries;
5. ``store.finalize``: one round trip writes segments, changes and daily sales and marks the events done;
6. return: the caller (the faust agent) acknowledges the batch's offsets only now.

Steps 1-4 (up to starting the sends) are the first phase, :meth:`BatchProcessor.start`; the wait for the
deliveries and step 5 run in a task, and the next batch's first phase may run meanwhile (its Redis and
scoring work overlaps the previous batch's waits). Finalizes still run one at a time in batch order, and a
batch reads the segment records of batches not yet finalized from memory, not from the store.

A crash between 2 and 5 leaves events APPLIED: redelivered, they are not folded again but are scored and
emitted again. If Redis is unreachable, steps 2 and 5 back off and retry; nothing is acknowledged meanwhile.
This module knows nothing about faust: it takes a :class:`~segstream.streams.state.base.StateStore` and a
:class:`~segstream.streams.outputs.Producer`, so unit tests run it with ``memory://`` and a fake producer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from segstream.models.contract import DEFAULT_LIMITS, EventLimits
from segstream.models.errors import EventValidationError
from segstream.models.events import Event, check_not_ahead, parse_event
from segstream.models.features import day_index
from segstream.streams.bundle_watch import ActiveModel, ModelHolder
from segstream.streams.campaign_triggers import PendingCampaigns, RulesWatcher, decide_triggers
from segstream.streams.evaluate import days_to_ms, evaluate
from segstream.streams.monitoring import WorkerStats
from segstream.streams.outputs import (
    OutputBatch,
    Producer,
    change_payload,
    dead_letter_payload,
    now_iso,
    scored_payload,
)
from segstream.streams.retry import retry_transient
from segstream.streams.state.base import CustomerView, Delivery, Finalization, SegmentRecord, StateStore

log = logging.getLogger("segstream.worker")

# Sales of a customer the model could not score (no segment yet) are kept under this id.
UNSCORED_SEGMENT = -1


class ConsumedRecord(Protocol):
    """What the pipeline reads of one consumed message. faust's own ``Message`` has these attributes, so the
    worker hands its messages over as they are instead of copying each into a :class:`RawRecord`."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class RawRecord(NamedTuple):
    """One consumed message as the broker delivered it, built by hand (tests, tools): a tuple, as a frozen
    dataclass's ``__init__`` costs ~3x as much."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class PipelineConfig:
    """Output topics and decision knobs.

    Attributes:
        scored_topic: Where every scored transaction goes.
        changes_topic: Where segment changes go.
        dead_letters_topic: Where invalid messages go.
        hysteresis: Evaluations a new segment must hold before it is emitted (>= 1).
        dwell_days: Event time a new segment must hold before it is emitted (0: off).
        inactivity_threshold_days: The sweep re-scores a customer once the watermark has moved this far
            past the customer's last evaluation with no new event.
        limits: The event contract's bounds (``Settings.event_limits()``, the ones cleaning applies too);
            events timed more than ``limits.max_future_skew_ms`` after the worker's clock are dead-lettered
            (they would drag the watermark ahead for everyone); 0 accepts any time the contract allows.
        triggers_topic: Where campaign triggers go.
        rules: The campaign rules (None: no campaigns).
        crash_before_finalize_batch: A failpoint for fault tests: SIGKILL the process once the N-th batch's
            outputs are delivered and before its finalize (0: never). The one crash at-least-once outputs
            cannot avoid, made deterministic so a test can show a re-emitted change keeps its id.
    """

    scored_topic: str = "transactions.scored"
    changes_topic: str = "segment-changes"
    dead_letters_topic: str = "dead-letters"
    hysteresis: int = 1
    dwell_days: float = 0.0
    inactivity_threshold_days: float = 90.0
    limits: EventLimits = DEFAULT_LIMITS
    crash_before_finalize_batch: int = 0
    sweep_page_delay_s: float = 0.0  # failpoint: see WorkerSettings.failpoint_sweep_page_delay_s
    triggers_topic: str = "campaign-triggers"
    rules: RulesWatcher | None = None


@dataclass
class BatchResult:
    """What one batch did."""

    events: int = 0
    scored: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    changes: int = 0
    watermark_ms: int = 0
    model_version: str = ""
    seconds: float = 0.0
    change_records: list[dict[str, object]] = field(default_factory=list)


class BatchProcessor:
    """Processes micro-batches against a state store and a producer.

    A batch runs in two phases. :meth:`start` parses, folds the batch into the store, scores and starts the
    sends; the returned task then waits for the deliveries and finalizes. The next batch may start while
    that task runs: only one finalize runs at a time, in batch order, and segment records a batch decided but
    has not finalized yet are kept here (``_unfinalized``) and take the place of the stored ones the next
    batch reads, so hysteresis and ``previous_segment`` see every earlier batch.
    """

    def __init__(
        self,
        store: StateStore,
        producer: Producer,
        models: ModelHolder,
        config: PipelineConfig | None = None,
        stats: WorkerStats | None = None,
        lock: asyncio.Lock | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.models = models
        self.config = config or PipelineConfig()
        self.stats = stats or WorkerStats()
        # Held by a batch's first phase; the inactivity sweep takes it through ``exclusive``.
        self.lock = lock or asyncio.Lock()
        self.exclusive = _Exclusive(self)
        self._unfinalized: dict[str, SegmentRecord] = {}
        self._pending_campaigns = PendingCampaigns()
        self._finishing: asyncio.Task[BatchResult] | None = None

    async def process(self, records: Sequence[ConsumedRecord]) -> BatchResult:
        """Process one batch; when this returns, its state is written and its outputs delivered.

        Raises:
            NoModelError: No model is loaded (the caller waits for one before consuming).
            Exception: A non-transient store failure; the caller must stop without acknowledging.
        """
        return await (await self.start(records))

    async def start(self, records: Sequence[ConsumedRecord]) -> asyncio.Task[BatchResult]:
        """Run a batch's first phase; return the task that delivers and finalizes it (after the previous one).

        The batch may be acknowledged once the task has returned. Raises like :meth:`process`, from here or
        from the task.
        """
        started = time.perf_counter()
        cfg = self.config
        model = self.models.require()  # one model for the whole batch, even if a swap lands meanwhile
        out = OutputBatch(self.producer)
        result = BatchResult(events=len(records))
        events: list[Event] = []
        limits = cfg.limits
        skew_ms = limits.max_future_skew_ms
        now_ms = int(time.time() * 1000)  # one clock reading per batch
        for rec in records:
            try:
                raw = rec.value if rec.value is not None else b""
                event = parse_event(raw, limits)
                if skew_ms:
                    check_not_ahead(event, now_ms, skew_ms)
                events.append(event)
            # parse_event rejects nesting deeper than MAX_NESTING; RecursionError stays a safety net, as one
            # such message would otherwise kill every batch it lands in, restart after restart.
            except (EventValidationError, RecursionError) as exc:
                if rec.value is None:
                    reason, code = "empty message (no value)", "empty_message"
                elif isinstance(exc, EventValidationError):
                    reason, code = str(exc), exc.code
                else:
                    reason, code = f"payload nested too deep ({exc})", "nested_too_deep"
                log.debug("dead letter %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, reason)
                payload = dead_letter_payload(rec.value, reason, rec.topic, rec.partition, rec.offset, rec.key,
                                              reason_code=code)  # fmt: skip
                await out.send(cfg.dead_letters_topic, rec.key, payload)
                result.dead_letters += 1
                self.stats.note_dead_letter(code)
        self.stats.note_valid(len(events))
        result.model_version = model.version
        self.stats.add_stage("parse", time.perf_counter() - started)
        finalization = None
        async with self.lock:
            if events:
                finalization = await self._apply_score_send(events, model, out, result)
            previous = self._finishing
            finishing = asyncio.ensure_future(self._finish(records, out, finalization, result, started, previous))
            self._finishing = finishing
        return finishing

    async def drain(self) -> None:
        """Wait until every started batch has finalized (or failed: the batch loop reports that)."""
        finishing = self._finishing
        if finishing is not None and not finishing.done():
            await asyncio.wait([finishing])

    async def _apply_score_send(
        self, events: list[Event], model: ActiveModel, out: OutputBatch, result: BatchResult
    ) -> Finalization:
        cfg = self.config
        stage, clock = self.stats.add_stage, time.perf_counter
        t0 = clock()
        with_categories = model.needs_categories
        applied = await retry_transient(
            lambda: self.store.apply(events, with_categories=with_categories),
            f"apply a batch of {len(events)} events to the state store",
        )
        fresh = [e for e, d in zip(events, applied.deliveries, strict=True) if d is not Delivery.DONE]
        result.duplicates = len(events) - len(fresh)
        result.watermark_ms = applied.watermark_ms
        # The event that triggered each customer's evaluation: the latest one in the batch (ties: largest id).
        triggers: dict[str, tuple[str, int]] = {}
        bases: dict[str, str] = {}
        for e in fresh:
            bases.setdefault(e.customer_id, e.event_id)  # the first new event, in offset order
            best = triggers.get(e.customer_id)
            if best is None or e.ts_ms > best[1] or (e.ts_ms == best[1] and e.event_id > best[0]):
                triggers[e.customer_id] = (e.event_id, e.ts_ms)
        t1 = clock()
        stage("apply", t1 - t0)
        customers, unfinalized = applied.customers, self._unfinalized
        views: dict[str, CustomerView] = {}
        for cid in triggers:
            view = customers.get(cid)
            if view is not None:
                record = unfinalized.get(cid)
                # A record decided by a batch still finalizing is newer than the stored one.
                views[cid] = view if record is None else CustomerView(cid, view.aggregates, record, view.categories)
        profiles = None
        if model.needs_attributes:
            ids = list(views)
            profiles = await retry_transient(lambda: self.store.profiles(ids), f"read {len(ids)} customer profiles")
        evaluations = evaluate(
            views,
            model,
            applied.watermark_ms,
            hold=cfg.hysteresis,
            cause="purchase",
            recheck_after_ms=days_to_ms(cfg.inactivity_threshold_days),
            triggers=triggers,
            bases=bases,
            dwell_ms=days_to_ms(cfg.dwell_days),
            profiles=profiles,
        )
        segment_of: dict[str, int | None] = {cid: v.segment.segment for cid, v in views.items()}
        observe = self.stats.mix.observe
        for ev in evaluations:
            segment = ev.record.segment
            segment_of[ev.customer_id] = segment
            unfinalized[ev.customer_id] = ev.record
            observe(ev.customer_id, -1 if segment is None else segment)
        t2 = clock()
        stage("score", t2 - t1)
        scored_at = now_iso()
        names, version = model.names, model.version
        name_of = {seg: model.segment_name(seg) for seg in set(segment_of.values())}  # a few segments a batch
        scored: list[tuple[bytes | None, bytes]] = []
        sales: list[tuple[str, int, int, int]] = []
        for e in fresh:
            seg = segment_of.get(e.customer_id)
            scored.append((e.customer_id.encode(), scored_payload(e, seg, name_of.get(seg), version, scored_at)))
            series = UNSCORED_SEGMENT if seg is None else seg
            sales.append((e.event_id, day_index(e.ts_ms), series, e.amount_cents))
        await out.send_many(cfg.scored_topic, scored)
        changes = [ev.change for ev in evaluations if ev.change is not None]
        about = model.descriptions
        change_records = [(c.customer_id.encode(), change_payload(c, names, scored_at, about)) for c in changes]
        await out.send_many(cfg.changes_topic, change_records)
        campaigns = cfg.rules.campaigns(model) if cfg.rules is not None else []
        triggers = await decide_triggers(changes, campaigns, self.store, self._pending_campaigns, model)
        if triggers.records:
            await out.send_many(cfg.triggers_topic, triggers.records)
        self._pending_campaigns.add(triggers)
        self.stats.note_triggers(len(triggers.records), triggers.suppressed)
        stage("send", clock() - t2)
        result.scored = len(fresh)
        result.changes = len(changes)
        result.change_records = [c.history_entry() for c in changes]
        return Finalization(
            segments={ev.customer_id: ev.record for ev in evaluations},
            changes=changes,
            sales=sales,
            done_event_ids=[e.event_id for e in fresh],
            next_check_ms={ev.customer_id: ev.next_check_ms for ev in evaluations},
            cooldowns=triggers.cooldowns,
            caps=triggers.caps,
        )

    async def _finish(
        self,
        records: Sequence[ConsumedRecord],
        out: OutputBatch,
        batch: Finalization | None,
        result: BatchResult,
        started: float,
        previous: asyncio.Task[BatchResult] | None,
    ) -> BatchResult:
        stage, clock = self.stats.add_stage, time.perf_counter
        t0 = clock()
        await out.wait_all()
        stage("deliver", clock() - t0)
        crash_at = self.config.crash_before_finalize_batch
        if crash_at and self.stats.batches + 1 >= crash_at:
            log.warning("failpoint crash_before_finalize_batch: killing the worker before a finalize")
            os.kill(os.getpid(), signal.SIGKILL)
        if previous is not None:
            await previous  # finalizes go in batch order; a failure before this one fails this one too
        if batch is not None:
            t1 = clock()
            await retry_transient(
                lambda: self.store.finalize(batch), f"finalize a batch of {len(batch.done_event_ids)} events"
            )
            stage("finalize", clock() - t1)
            for cid, record in batch.segments.items():
                if self._unfinalized.get(cid) is record:  # a later batch may have decided again meanwhile
                    del self._unfinalized[cid]
            self._pending_campaigns.remove(batch.cooldowns, batch.caps)
        # A batch's records are in offset order per partition: the last of each is its highest.
        last = {(rec.topic, rec.partition): rec.offset for rec in records}
        for (topic, partition), offset in last.items():
            self.stats.note_offsets(topic, partition, offset)
        result.seconds = clock() - started
        self.stats.batches += 1
        self.stats.processed += result.scored
        self.stats.dead_letters += result.dead_letters
        self.stats.duplicates += result.duplicates
        self.stats.note_changes(batch.changes if batch is not None else ())
        self.stats.batch_seconds += result.seconds
        return result


class _Exclusive:
    """``async with processor.exclusive``: the batch lock, once every started batch has finalized.

    The inactivity sweep reads and writes segment records straight from the store, so no batch may be
    between its first phase and its finalize meanwhile.
    """

    def __init__(self, processor: BatchProcessor) -> None:
        self._processor = processor

    async def __aenter__(self) -> None:
        await self._processor.lock.acquire()
        try:
            await self._processor.drain()
        except BaseException:
            self._processor.lock.release()
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self._processor.lock.release()
