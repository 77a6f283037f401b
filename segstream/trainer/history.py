"""The training history as the models read it: per-customer aggregates as of any time, and daily sales.

Every training stage that looks at the events reduces them to the same few things: the aggregates of
:data:`segstream.models.features.AGGREGATE_FIELDS` as of the end of the data and as of one or two horizons
earlier (the name check and the purchase models' calibration periods), and the daily net sales per
segment. A :class:`History` answers exactly those questions, so the stages do not care where the events
are:

- :class:`EventHistory`: clean events in memory (``clean_transactions`` output), aggregated with pandas;
- :class:`segstream.trainer.pushdown.DuckDBHistory`: a query's rows left in DuckDB, aggregated there
  (the GROUP BY pushed down), so only one row per customer comes back.

Spend and repeat purchases between two times are differences of the aggregates at those times (integer
cents and counts), so both kinds give the same numbers to the cent.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np
import pandas as pd

from segstream.models.features import DAY_MS, _epoch_ms, batch_aggregates, features_of_aggregates
from segstream.models.forecasting import daily_sales


class History(Protocol):
    """What training reads from the events."""

    @property
    def rows(self) -> int:
        """Clean events."""
        ...

    @property
    def first_ms(self) -> int:
        """The earliest event time, epoch ms."""
        ...

    @property
    def last_ms(self) -> int:
        """The latest event time, epoch ms (the as-of time of the bundle's features)."""
        ...

    def aggregates(self, as_of_ms: int) -> pd.DataFrame:
        """:func:`segstream.models.features.batch_aggregates` as of ``as_of_ms``: one row per customer with
        an event at or before it, index ``customer_id`` sorted, ``attrs["as_of_ms"]`` set."""
        ...

    def daily_sales(self, segments: pd.Series) -> pd.DataFrame:
        """:func:`segstream.models.forecasting.daily_sales` of the events, with one series per segment of
        ``segments`` (customer_id -> segment id)."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """Rows, customers, time span and a content hash, for the bundle manifest."""
        ...


def to_ms(ts: pd.Timestamp) -> int:
    """Epoch milliseconds of a timestamp (floored, as the features' aggregation does)."""
    return int(pd.Timestamp(ts).value // 1_000_000)


def to_timestamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


class CachedHistory:
    """The bookkeeping every History shares: row count and time span, and aggregates computed once per
    as-of time (the name check and the purchase models ask for the same cutoffs). Subclasses set
    ``_rows``, ``_first_ms`` and ``_last_ms`` and implement :meth:`_aggregate`."""

    _rows: int
    _first_ms: int
    _last_ms: int

    def __init__(self) -> None:
        self._cache: dict[int, pd.DataFrame] = {}

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def first_ms(self) -> int:
        return self._first_ms

    @property
    def last_ms(self) -> int:
        return self._last_ms

    def aggregates(self, as_of_ms: int) -> pd.DataFrame:
        if as_of_ms not in self._cache:
            self._cache[as_of_ms] = self._aggregate(int(as_of_ms))
        return self._cache[as_of_ms]

    def _aggregate(self, as_of_ms: int) -> pd.DataFrame:
        raise NotImplementedError


class EventHistory(CachedHistory):
    """Clean events in memory, aggregated with pandas."""

    def __init__(self, events: pd.DataFrame) -> None:
        super().__init__()
        self.events = events
        ts = pd.to_datetime(events["timestamp"], utc=True)
        self._rows = int(len(events))
        self._first_ms = to_ms(ts.min())
        self._last_ms = to_ms(ts.max())

    def _aggregate(self, as_of_ms: int) -> pd.DataFrame:
        return batch_aggregates(self.events, as_of=to_timestamp(as_of_ms))

    def daily_sales(self, segments: pd.Series) -> pd.DataFrame:
        events = self.events
        groups = pd.DataFrame({
            "day": _epoch_ms(events["timestamp"]) // DAY_MS,
            "segment": events["customer_id"].map(segments).to_numpy(dtype=np.float64),
            "cents": np.rint(events["amount"].to_numpy(dtype=np.float64) * 100).astype(np.int64),
        }).groupby(["day", "segment"], dropna=False, sort=False)["cents"].sum().reset_index()
        return daily_sales_of_groups(groups)

    def fingerprint(self) -> dict[str, Any]:
        events = self.events
        hashed = pd.util.hash_pandas_object(events[["event_id", "customer_id", "timestamp", "amount"]], index=False)
        return {
            "rows": int(len(events)),
            "customers": int(events["customer_id"].nunique()),
            "first_timestamp": str(events["timestamp"].min()),
            "last_timestamp": str(events["timestamp"].max()),
            "sha256": hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest(),
        }


def daily_sales_of_groups(groups: pd.DataFrame) -> pd.DataFrame:
    """:func:`segstream.models.forecasting.daily_sales` from net cents per (UTC day index, segment) group.

    Both histories reduce their events to these integer sums first and come here in the same order, so
    their series are equal to the last bit: Prophet's fit moves by a percent when its input moves by 1e-13
    (measured on CDNOW), so "equal up to rounding" would not give equal forecasts.
    """
    ordered = groups.sort_values(["day", "segment"], kind="stable", na_position="last")
    compact = pd.DataFrame({
        "timestamp": pd.to_datetime(ordered["day"].to_numpy(np.int64) * DAY_MS, unit="ms", utc=True),
        "amount": ordered["cents"].to_numpy(np.int64) / 100.0,
        "segment": ordered["segment"].to_numpy(dtype=np.float64),
    })
    return daily_sales(compact, segment_col="segment")


def as_history(events: pd.DataFrame | History) -> History:
    """A History for clean events, or the History itself."""
    return EventHistory(events) if isinstance(events, pd.DataFrame) else events


def features_at(history: History, as_of_ms: int) -> pd.DataFrame:
    """Every customer's features as of ``as_of_ms`` (customers with an event by then)."""
    return features_of_aggregates(history.aggregates(as_of_ms))


def change_between(history: History, customers: pd.Index, start_ms: int, end_ms: int) -> pd.DataFrame:
    """For ``customers``: net spend (float, from integer cents) and purchases in ``(start_ms, end_ms]``.

    Columns ``spend`` and ``purchases``; a customer without events in the period gets 0.
    """
    end = history.aggregates(end_ms).reindex(customers)
    start = history.aggregates(start_ms).reindex(customers)
    cents = end["net_cents"].fillna(0).to_numpy(np.int64) - start["net_cents"].fillna(0).to_numpy(np.int64)
    bought = end["purchases"].fillna(0).to_numpy(np.int64) - start["purchases"].fillna(0).to_numpy(np.int64)
    return pd.DataFrame({"spend": cents / 100.0, "purchases": bought}, index=customers)
