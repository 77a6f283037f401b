"""An in-process state store with the Redis store's semantics, for unit tests of the worker's logic."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from segstream.models.customer_state import CustomerState
from segstream.models.events import Event
from segstream.models.preferences import event_split
from segstream.streams.state.base import (
    HISTORY_LENGTH,
    ApplyResult,
    CampaignMemory,
    CustomerView,
    Delivery,
    Finalization,
    SegmentRecord,
)
from segstream.streams.state.dedupe import mark_repeats_in_batch


class MemoryStateStore:
    """:class:`~segstream.streams.state.base.StateStore` in a dict (``memory://``); not durable."""

    def __init__(self) -> None:
        self._states: dict[str, CustomerState] = {}
        self._segments: dict[str, SegmentRecord] = {}
        self._markers: dict[str, int] = {}
        self._history: dict[str, list[dict[str, object]]] = {}
        self._sales: dict[int, dict[str, int]] = {}
        self._due: dict[str, int] = {}
        self._cooldowns: dict[tuple[str, str], int] = {}
        self._caps: dict[tuple[str, int], set[str]] = {}
        self._watermark = 0
        self._profiles: dict[str, dict[str, Any]] = {}

    async def apply(self, events: Sequence[Event], with_categories: bool = False) -> ApplyResult:
        """Fold a batch in; see :class:`~segstream.streams.state.base.StateStore`."""
        unique, repeats = mark_repeats_in_batch(events)
        found: list[Delivery] = []
        for event in unique:
            self._watermark = max(self._watermark, event.ts_ms)
            marker = self._markers.get(event.event_id)
            if marker is not None:
                found.append(Delivery(marker + 1))
                continue
            self._markers[event.event_id] = 1
            state = self._states.setdefault(event.customer_id, CustomerState())
            state.add(event.event_id, event.ts_ms, event.amount_cents, event_split(event.payload, event.amount_cents))
            state.seen_event_ids.clear()  # dedupe is the markers' job here, as in Redis
            found.append(Delivery.NEW)
        it = iter(found)
        deliveries = [Delivery.DONE if i in repeats else next(it) for i in range(len(events))]
        customers = {e.customer_id for e in events}
        views = await self.view(sorted(customers))
        if not with_categories:
            views = {cid: replace(v, categories=None) for cid, v in views.items()}
        return ApplyResult(deliveries, self._watermark, views)

    async def finalize(self, batch: Finalization) -> None:
        """Write segments, changes and sales, then mark the batch's events done."""
        for cid, record in batch.segments.items():
            self._segments[cid] = replace(record)
        for change in batch.changes:
            items = self._history.setdefault(change.customer_id, [])
            items.insert(0, json.loads(json.dumps(change.history_entry())))
            del items[HISTORY_LENGTH:]
        for event_id, day, segment, cents in batch.sales:
            if self._markers.get(event_id) != 2:
                series = self._sales.setdefault(day, {})
                series["total"] = series.get("total", 0) + cents
                key = f"segment:{segment}"
                series[key] = series.get(key, 0) + cents
        for event_id in batch.done_event_ids:
            self._markers[event_id] = 2
        self._due.update(batch.next_check_ms)
        self._cooldowns.update(batch.cooldowns)
        for key, ids in batch.caps.items():
            self._caps.setdefault(key, set()).update(ids)

    async def campaign_memory(
        self, customer_ids: Sequence[str], campaigns: Sequence[str], days: Sequence[int]
    ) -> CampaignMemory:
        """When each of these customers last got each campaign, and each campaign's triggers on these days."""
        last = {(c, k): self._cooldowns[(c, k)] for c in customer_ids for k in campaigns if (c, k) in self._cooldowns}
        fired = {(k, d): len(self._caps[(k, d)]) for k in campaigns for d in days if (k, d) in self._caps}
        return CampaignMemory(last, fired)

    async def set_profiles(self, profiles: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Replace customers' profiles (None deletes one)."""
        for cid, attributes in profiles.items():
            if attributes is None:
                self._profiles.pop(cid, None)
            else:
                self._profiles[cid] = json.loads(json.dumps(dict(attributes)))

    async def profiles(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored profiles of some customers."""
        return {cid: dict(self._profiles[cid]) for cid in customer_ids if cid in self._profiles}

    async def view(self, customer_ids: Sequence[str], as_of_ms: int | None = None) -> dict[str, CustomerView]:
        """Current views of some customers as of T (default: the watermark)."""
        as_of = self._watermark if as_of_ms is None else as_of_ms
        return {
            cid: CustomerView(
                cid, self._states[cid].aggregates(as_of), replace(self._segments.get(cid, SegmentRecord())),
                dict(self._states[cid].categories),
            )
            for cid in customer_ids
            if cid in self._states
        }

    async def due_for_check(self, as_of_ms: int, limit: int) -> list[str]:
        """Customers whose next inactivity check is due, earliest first."""
        due = sorted((at, cid) for cid, at in self._due.items() if at <= as_of_ms)
        return [cid for _, cid in due[:limit]]

    async def claim_due(self, as_of_ms: int, limit: int) -> list[str]:
        """One process holds everything: the same as :meth:`due_for_check`."""
        return await self.due_for_check(as_of_ms, limit)

    async def claim_forecast(self, lease_ms: int) -> bool:
        """One process holds everything."""
        return True

    async def watermark(self) -> int:
        """The largest event time folded in so far."""
        return self._watermark

    async def daily_sales(self) -> dict[int, dict[str, int]]:
        """Streamed sales in cents per UTC day."""
        return {day: dict(series) for day, series in self._sales.items()}

    async def history(self, customer_id: str) -> list[dict[str, object]]:
        """The customer's latest segment changes, newest first."""
        return list(self._history.get(customer_id, []))

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""
