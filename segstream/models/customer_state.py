"""The per-customer fold: start state, add an event, read features as of T.

This is the reference for what the stream keeps in Redis (the Lua script there implements the same
``add`` on a hash). Everything it holds is an integer and every update is a sum, a min or a max, so the
state after a set of events is the same whatever order they arrived in; a repeated ``event_id`` is
ignored, so redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from segstream.models.features import (
    AGGREGATE_FIELDS,
    NO_TIMESTAMP,
    WINDOWS_DAYS,
    day_index,
    features_from_aggregates,
)
from segstream.models.preferences import add_split

# Day buckets older than this, relative to the customer's latest event, can never fall in a window again
# (T is never before the latest event), so they are dropped to keep state bounded.
BUCKET_RETENTION_DAYS = max(WINDOWS_DAYS)


@dataclass
class CustomerState:
    """Integer aggregates of one customer's events, plus one (net cents, purchases) bucket per UTC day."""

    first_ts: int = NO_TIMESTAMP
    last_ts: int = NO_TIMESTAMP
    first_purchase_ts: int = NO_TIMESTAMP
    last_purchase_ts: int = NO_TIMESTAMP
    purchases: int = 0
    gross_cents: int = 0
    net_cents: int = 0
    returns: int = 0
    returns_cents: int = 0
    days: dict[int, list[int]] = field(default_factory=dict)
    seen_event_ids: set[str] = field(default_factory=set)
    # Net cents per category (:mod:`segstream.models.preferences`); never pruned, a sum over all time.
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True before any event was added."""
        return self.first_ts == NO_TIMESTAMP

    def add(self, event_id: str, ts_ms: int, amount_cents: int, split: Iterable[tuple[str, int]] = ()) -> bool:
        """Fold one event in (``split``: its (category, cents), see :func:`~segstream.models.preferences.event_split`).

        Returns False (and changes nothing) when ``event_id`` was seen before.
        """
        if event_id in self.seen_event_ids:
            return False
        self.seen_event_ids.add(event_id)
        add_split(self.categories, split)
        self.first_ts = ts_ms if self.is_empty else min(self.first_ts, ts_ms)
        self.last_ts = max(self.last_ts, ts_ms)
        self.net_cents += amount_cents
        if amount_cents >= 0:
            self.purchases += 1
            self.gross_cents += amount_cents
            if self.first_purchase_ts == NO_TIMESTAMP or ts_ms < self.first_purchase_ts:
                self.first_purchase_ts = ts_ms
            self.last_purchase_ts = max(self.last_purchase_ts, ts_ms)
        else:
            self.returns += 1
            self.returns_cents -= amount_cents
        bucket = self.days.setdefault(day_index(ts_ms), [0, 0])
        bucket[0] += amount_cents
        bucket[1] += 1 if amount_cents >= 0 else 0
        self.prune()
        return True

    def prune(self) -> None:
        """Drop day buckets that no window as of T >= ``last_ts`` can reach."""
        horizon = day_index(self.last_ts) - BUCKET_RETENTION_DAYS
        for day in [d for d in self.days if d <= horizon]:
            del self.days[day]

    def aggregates(self, as_of_ms: int) -> dict[str, int]:
        """The :data:`AGGREGATE_FIELDS` of this state as of T (window sums depend on T)."""
        as_of_day = day_index(as_of_ms)
        out = {
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "first_purchase_ts": self.first_purchase_ts,
            "last_purchase_ts": self.last_purchase_ts,
            "purchases": self.purchases,
            "gross_cents": self.gross_cents,
            "net_cents": self.net_cents,
            "returns": self.returns,
            "returns_cents": self.returns_cents,
        }
        for w in WINDOWS_DAYS:
            out[f"net_cents_{w}d"] = sum(v[0] for d, v in self.days.items() if d > as_of_day - w)
            out[f"purchases_{w}d"] = sum(v[1] for d, v in self.days.items() if d > as_of_day - w)
        return out


class AggregateRow(Mapping[str, int]):
    """One customer's aggregates as the plain row of :data:`AGGREGATE_FIELDS` values the store returns.

    It reads like the ``dict`` :meth:`CustomerState.aggregates` returns (and compares equal to it), but
    :func:`aggregates_matrix` stacks these rows with one numpy call: building a dict per customer and
    reading it back a field at a time was ~2 us per customer on the worker's hot path.
    """

    __slots__ = ("row",)

    def __init__(self, values: Sequence[int]) -> None:
        if len(values) != len(AGGREGATE_FIELDS):
            raise ValueError(f"expected {len(AGGREGATE_FIELDS)} aggregate values, got {len(values)}")
        self.row = values

    def __getitem__(self, name: str) -> int:
        return int(self.row[_FIELD_INDEX[name]])

    def __iter__(self) -> Iterator[str]:
        return iter(AGGREGATE_FIELDS)

    def __len__(self) -> int:
        return len(AGGREGATE_FIELDS)

    def __repr__(self) -> str:
        return f"AggregateRow({dict(self)!r})"


_FIELD_INDEX = {name: i for i, name in enumerate(AGGREGATE_FIELDS)}


def aggregates_matrix(rows: Sequence[Mapping[str, int]]) -> dict[str, np.ndarray]:
    """Stack per-customer aggregates into the column arrays :func:`features_from_aggregates` takes."""
    # type() is, not isinstance(): AggregateRow is a Mapping, and ABC instance checks cost ~0.3 us a row.
    plain = [r.row for r in rows if type(r) is AggregateRow]
    if len(plain) == len(rows):
        columns = np.array(plain, dtype=np.int64).reshape(len(rows), len(AGGREGATE_FIELDS)).T
        return {name: np.ascontiguousarray(columns[i]) for i, name in enumerate(AGGREGATE_FIELDS)}
    return {name: np.fromiter((r[name] for r in rows), dtype=np.int64, count=len(rows)) for name in AGGREGATE_FIELDS}


def features_of_states(states: Sequence[CustomerState], as_of_ms: int) -> np.ndarray:
    """Feature matrix for several folded customers as of one T (rows in the order given)."""
    return features_from_aggregates(aggregates_matrix([s.aggregates(as_of_ms) for s in states]), as_of_ms)


def fold_events(events: Iterable[tuple]) -> dict[str, CustomerState]:
    """Fold (event_id, customer_id, ts_ms, amount_cents[, split]) tuples into one state per customer."""
    states: dict[str, CustomerState] = {}
    for event_id, customer_id, ts_ms, cents, *split in events:
        states.setdefault(customer_id, CustomerState()).add(event_id, ts_ms, cents, split[0] if split else ())
    return states
