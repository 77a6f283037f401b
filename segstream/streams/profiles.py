"""The ``customer-profiles`` topic: keep each customer's latest attributes and re-score the customer.

A batch of profile records is validated (:func:`segstream.models.profiles.parse_profile`); an invalid one
goes to the dead-letter topic with its reason, like a bad transaction. The valid ones are written to the
store (the latest record of a customer in the batch wins, as compaction would keep it) and, when the
active model reads attributes, every customer of the batch that has events is re-scored as of the
watermark with ``cause = "profile"``: a new income can move a customer's segment with no new purchase.

Order does not matter for the end state: the store holds the latest profile and all events, and scoring is
a function of the two, so batch and stream agree whichever arrived first (the parity test replays both
orders). Writing a profile is idempotent, so a redelivered record changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from segstream.models.errors import EventValidationError
from segstream.models.profiles import parse_profile
from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.monitoring import WorkerStats
from segstream.streams.outputs import OutputBatch, Producer, dead_letter_payload
from segstream.streams.pipeline import ConsumedRecord, PipelineConfig
from segstream.streams.retry import retry_transient
from segstream.streams.state.base import StateStore
from segstream.streams.sweep import evaluate_customers

log = logging.getLogger("segstream.worker")


@dataclass
class ProfileBatchResult:
    """What one batch of profile records did."""

    stored: int = 0
    deleted: int = 0
    dead_letters: int = 0
    rescored: int = 0
    changes: int = 0


async def process_profiles(
    records: Sequence[ConsumedRecord],
    store: StateStore,
    holder: ModelHolder,
    producer: Producer,
    config: PipelineConfig,
    *,
    lock: AbstractAsyncContextManager[Any],
    stats: WorkerStats | None = None,
) -> ProfileBatchResult:
    """Validate, store and (when the model reads attributes) re-score one batch of profile records."""
    latest: dict[str, dict[str, Any] | None] = {}
    out = OutputBatch(producer)
    result = ProfileBatchResult()
    for rec in records:
        try:
            profile = parse_profile(rec.key, rec.value)
        except EventValidationError as exc:
            payload = dead_letter_payload(rec.value, str(exc), rec.topic, rec.partition, rec.offset, rec.key,
                                          reason_code=exc.code)  # fmt: skip
            await out.send(config.dead_letters_topic, rec.key, payload)
            result.dead_letters += 1
            if stats is not None:
                stats.note_dead_letter(exc.code)
            continue
        latest.pop(profile.customer_id, None)  # keep the batch's order: the last record of a customer wins
        latest[profile.customer_id] = profile.attributes
    async with lock:
        await retry_transient(lambda: store.set_profiles(latest), f"store {len(latest)} customer profiles")
        result.stored = sum(1 for a in latest.values() if a is not None)
        result.deleted = len(latest) - result.stored
        model = holder.active
        if model is not None and model.needs_attributes and latest:
            watermark = await retry_transient(store.watermark, "read the watermark")
            swept = await evaluate_customers(list(latest), store, model, producer, config, watermark, stats,
                                             cause="profile")  # fmt: skip
            result.rescored, result.changes = swept.evaluated, swept.changes
    await out.wait_all()
    if stats is not None:
        stats.profiles_stored += result.stored + result.deleted
    return result
