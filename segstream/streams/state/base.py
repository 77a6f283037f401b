"""The state store interface the worker talks to, and the records it exchanges.

One batch of events costs two round trips: :meth:`StateStore.apply` folds the events in atomically and
idempotently and returns, for every customer in the batch, the aggregates as of the watermark together with
the stored segment record; :meth:`StateStore.finalize` writes the new segment records, the change history
and the per-segment sales, and marks the events done. Events are marked *applied* by ``apply`` and *done*
by ``finalize``, so an event redelivered after a crash between the two is not folded twice but is still
scored and emitted (outputs are at-least-once, state is exactly-once).

Implementations are chosen by URL (:func:`segstream.streams.state.open_store`): ``redis://`` / ``rediss://``
(the real thing) and ``memory://`` (a dict, for unit tests of the worker's logic).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from segstream.models.changes import change_id
from segstream.models.errors import SegstreamError
from segstream.models.events import Event

# Bump when the key layout or a stored field changes; pinned by a golden test.
DEFAULT_DEDUPE_TTL_S = 7 * 24 * 3600
HISTORY_LENGTH = 20


class StateStoreError(SegstreamError):
    """The state store is misconfigured (bad URL) or cannot be used."""


class Delivery(enum.IntEnum):
    """What ``apply`` found for one event."""

    NEW = 1  # first time seen: folded into state now
    APPLIED = 2  # folded by an earlier delivery that crashed before finalize: score and emit, don't fold
    DONE = 3  # fully processed before: a duplicate, skip


@dataclass
class SegmentRecord:
    """What is stored about a customer's segment between evaluations.

    Attributes:
        segment: The current (emitted) segment id, or None before the first evaluation.
        pending: A different segment seen in the latest evaluations but not yet held long enough.
        pending_count: How many consecutive evaluations ``pending`` has held.
        model_version: The bundle version that produced ``segment``.
        scored_as_of_ms: The as-of time of the latest evaluation.
        pending_since_ms: When ``pending`` was first seen, in event time (0 without one).
    """

    segment: int | None = None
    pending: int | None = None
    pending_count: int = 0
    model_version: str = ""
    scored_as_of_ms: int = 0
    pending_since_ms: int = 0  # event time ``pending`` was first seen (the dwell counts from it)


@dataclass
class CustomerView:
    """One customer's state as ``apply`` returns it."""

    customer_id: str
    aggregates: Mapping[str, int]
    segment: SegmentRecord
    # Net cents per category (product preferences); None where the call did not read them (``apply``
    # without ``with_categories``).
    categories: Mapping[str, int] | None = None


@dataclass
class ApplyResult:
    """The outcome of folding one batch in."""

    deliveries: list[Delivery]
    watermark_ms: int
    customers: dict[str, CustomerView]


@dataclass
class SegmentChange:
    """A customer moving segment (what goes to the ``segment-changes`` topic, and the history list)."""

    customer_id: str
    previous_segment: int | None
    segment: int
    model_version: str
    event_time_ms: int
    cause: str
    event_id: str | None
    features: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # the decision tree's path for the customer's features, in words
    tree_agrees: bool | None = None  # whether the tree predicts the same segment as the segmenter
    # What makes this change this change: the first new event of the customer in the evaluating batch
    # (a redelivered batch starts at or before it, so a re-emission has the same basis), or for the
    # inactivity sweep the as-of time.
    basis: str = ""

    @property
    def change_id(self) -> str:
        """Deterministic id: the same change emitted twice (a crash between send and finalize) has one id."""
        basis = self.basis or (self.event_id if self.event_id else f"as_of:{self.event_time_ms}")
        return change_id(self.customer_id, self.previous_segment, self.segment, self.model_version, self.cause, basis)

    def history_entry(self) -> dict[str, object]:
        """The compact form kept in the customer's history list (no feature snapshot)."""
        return {
            "change_id": self.change_id,
            "customer_id": self.customer_id,
            "previous_segment": self.previous_segment,
            "segment": self.segment,
            "model_version": self.model_version,
            "event_time_ms": self.event_time_ms,
            "cause": self.cause,
            "event_id": self.event_id,
        }


@dataclass
class Finalization:
    """What ``finalize`` writes for one batch."""

    segments: Mapping[str, SegmentRecord]
    changes: Sequence[SegmentChange]
    # (event_id, UTC day, segment id, cents) for every event emitted in this batch (NEW or APPLIED)
    sales: Sequence[tuple[str, int, int, int]]
    done_event_ids: Sequence[str]
    # customer -> event time from which the inactivity sweep should look at the customer again
    next_check_ms: Mapping[str, int] = field(default_factory=dict)
    # Campaign decisions, written in the same atomic step as the segments: (customer, campaign) -> event
    # time it last fired, and (campaign, UTC day) -> the trigger ids fired (a set, so a retried finalize
    # counts nothing twice).
    cooldowns: Mapping[tuple[str, str], int] = field(default_factory=dict)
    caps: Mapping[tuple[str, int], Sequence[str]] = field(default_factory=dict)


@dataclass
class CampaignMemory:
    """What the campaign rules remember, as read back from the store for some customers and days."""

    last_fired_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    fired_per_day: dict[tuple[str, int], int] = field(default_factory=dict)


class StateStore(Protocol):
    """Per-customer state, segments, sales windows and the watermark."""

    async def apply(self, events: Sequence[Event], with_categories: bool = False) -> ApplyResult:
        """Fold a batch in (atomically, idempotently) and return every touched customer's view (with its
        categories when asked: a model that uses product preferences needs them to score)."""
        ...

    async def finalize(self, batch: Finalization) -> None:
        """Write segments, changes and sales for a batch, then mark its events done."""
        ...

    async def view(self, customer_ids: Sequence[str], as_of_ms: int | None = None) -> dict[str, CustomerView]:
        """Current views of some customers (absent ones are left out), as of T (default: watermark)."""
        ...

    async def campaign_memory(
        self, customer_ids: Sequence[str], campaigns: Sequence[str], days: Sequence[int]
    ) -> CampaignMemory:
        """When each of these customers last got each campaign, and each campaign's triggers on these days."""
        ...

    async def set_profiles(self, profiles: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Replace customers' profiles (None deletes one); idempotent, the latest call wins."""
        ...

    async def profiles(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored profiles of some customers (those without one are left out)."""
        ...

    async def due_for_check(self, as_of_ms: int, limit: int) -> list[str]:
        """Customers whose next inactivity check time is at or before ``as_of_ms``."""
        ...

    async def claim_due(self, as_of_ms: int, limit: int) -> list[str]:
        """Like :meth:`due_for_check`, but only customers this worker is to sweep: however many workers run,
        each due customer is swept by one (the holder of its shard's sweep lease)."""
        ...

    async def claim_forecast(self, lease_ms: int) -> bool:
        """Take the forecast lease when free, or renew it when this worker holds it; True while held.

        However many workers run, the one holding the lease refreshes and publishes the sales forecast, so
        ``sales-forecasts`` gets each refresh once; a dead holder's lease passes on after ``lease_ms``.
        """
        ...

    async def watermark(self) -> int:
        """The largest event time folded in so far (0 when empty)."""
        ...

    async def daily_sales(self) -> dict[int, dict[str, int]]:
        """Streamed sales in cents per UTC day: ``{day: {"total": c, "segment:<id>": c, ...}}``."""
        ...

    async def history(self, customer_id: str) -> list[dict[str, object]]:
        """The customer's latest segment changes, newest first."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
