"""Turn raw transaction rows into typed, valid, de-duplicated events, and say what was dropped and why.

Each dropped row is counted under exactly one reason, checked in this order: missing event id, missing
customer id, unparseable timestamp, timestamp in the future, unparseable amount, duplicate event.
Duplicates are looked for only among rows that passed the other checks; the first occurrence in file order
is kept.

Timestamps: ISO 8601 (an offset is converted to UTC; a value without one is taken as UTC), or epoch
milliseconds given as an integer or a string of digits (digits always mean epoch milliseconds). A value
that parses but falls outside 1970-2100 counts as unparseable. One more than ``max_future_skew_s`` after the
clock (default a day, the worker's limit too) is in the future: one row stamped years ahead by a typo would
otherwise set the file's as-of time, and every customer's recency with it. Amounts: any finite number; NaN,
inf and text that is not a number count as unparseable. Zero amounts are kept (and counted), negative
amounts are returns (kept and counted).

Rows are named by the 1-based data row number: the frame's index when it is named ``row`` (as
:func:`segstream.trainer.loading.load_transactions` returns it), otherwise the position plus one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from segstream.models.events import DEFAULT_MAX_FUTURE_SKEW_S
from segstream.trainer.errors import DataFileError
from segstream.trainer.loading import OPTIONAL, REQUIRED

REASONS = {
    "missing_event_id": "missing event id",
    "missing_customer_id": "missing customer id",
    "unparseable_timestamp": "unparseable timestamp",
    "future_timestamp": "timestamp in the future",
    "unparseable_amount": "unparseable amount",
    "duplicate_event": "duplicate event",
}
_MIN_TS = pd.Timestamp("1970-01-01", tz="UTC")
_MAX_TS = pd.Timestamp("2100-01-01", tz="UTC")
_MIN_MS = 0.0
_MAX_MS = float(_MAX_TS.value // 1_000_000)


@dataclass(frozen=True)
class CleaningReport:
    """What cleaning kept and dropped, by reason.

    Attributes:
        source: the file (or other source) the rows came from.
        input_rows: rows before cleaning.
        kept_rows: rows after cleaning.
        dropped: reason key (see ``REASONS``) -> rows dropped for it.
        first_bad: reason key -> where it first happened, e.g. ``"row 7: 'abc'"``.
        zero_amount_rows: kept rows with amount 0.
        return_rows: kept rows with a negative amount.
        customers: distinct customers among the kept rows.
        first_timestamp: earliest kept timestamp (ISO 8601) or None.
        last_timestamp: latest kept timestamp (ISO 8601) or None.
    """

    source: str
    input_rows: int
    kept_rows: int
    dropped: dict[str, int] = field(default_factory=dict)
    first_bad: dict[str, str] = field(default_factory=dict)
    zero_amount_rows: int = 0
    return_rows: int = 0
    customers: int = 0
    first_timestamp: str | None = None
    last_timestamp: str | None = None

    @property
    def dropped_rows(self) -> int:
        """All dropped rows."""
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every field plus ``dropped_rows``."""
        return {**asdict(self), "dropped_rows": self.dropped_rows}

    def render(self) -> str:
        """A small plain-text table for the terminal."""
        lines = [f"cleaning {self.source}", f"  {'input rows':<32}{self.input_rows:>12,}"]
        for key, label in REASONS.items():
            count = self.dropped.get(key, 0)
            where = f"   first at {self.first_bad[key]}" if key in self.first_bad else ""
            lines.append(f"  {'dropped: ' + label:<32}{count:>12,}{where}")
        lines += [
            f"  {'kept rows':<32}{self.kept_rows:>12,}",
            f"  {'  of which returns':<32}{self.return_rows:>12,}",
            f"  {'  of which zero amount':<32}{self.zero_amount_rows:>12,}",
            f"  {'customers':<32}{self.customers:>12,}",
        ]
        if self.first_timestamp is not None:
            lines.append(f"  {'time range':<32}{self.first_timestamp} .. {self.last_timestamp}")
        return "\n".join(lines)


def _text(col: pd.Series) -> pd.Series:
    """Values as stripped strings; missing and blank become NA."""
    out = col.astype("str").str.strip()
    return out.where(out.str.len() > 0)


def _epoch_ms(values: pd.Series) -> np.ndarray:
    """Epoch milliseconds (numbers or digit strings) to datetime64[ns]; out of range -> NaT."""
    ms = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isfinite(ms) & (ms == np.floor(ms)) & (ms >= _MIN_MS) & (ms < _MAX_MS)
    out = np.full(len(ms), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ok] = (ms[ok].astype("int64") * 1_000_000).astype("datetime64[ns]")
    return out


def _datetimes(stamps: pd.Series) -> np.ndarray:
    """Tz-aware UTC timestamps of any unit to datetime64[ns]; out of range -> NaT."""
    ok = ((stamps >= _MIN_TS) & (stamps < _MAX_TS)).to_numpy(dtype=bool, na_value=False)
    out = np.full(len(stamps), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ok] = stamps[ok].dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
    return out


def parse_timestamps(col: pd.Series) -> pd.Series:
    """Parse a raw timestamp column to ``datetime64[ns, UTC]``; what cannot be parsed becomes NaT.

    Args:
        col: datetimes, epoch milliseconds (numbers or digit strings) or ISO 8601 strings.

    Returns:
        A Series with the same index. Values outside 1970-2100 are NaT too.
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        values = _datetimes(col.dt.tz_convert("UTC"))
    elif pd.api.types.is_datetime64_dtype(col.dtype):
        values = _datetimes(col.dt.tz_localize("UTC"))
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = _epoch_ms(col)
    else:
        text = _text(col)
        digits = text.str.fullmatch(r"-?\d+").to_numpy(dtype=bool, na_value=False)
        rest = text.notna().to_numpy() & ~digits
        values = np.full(len(col), np.datetime64("NaT"), dtype="datetime64[ns]")
        if digits.any():
            values[digits] = _epoch_ms(text[digits])
        if rest.any():
            values[rest] = _datetimes(pd.to_datetime(text[rest], format="ISO8601", utc=True, errors="coerce"))
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"), index=col.index)


def parse_amounts(col: pd.Series) -> pd.Series:
    """Parse a raw amount column to float64; text, NaN and inf become NaN."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        out = col.astype("float64")
    else:
        out = pd.to_numeric(_text(col), errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def _rows(raw: pd.DataFrame) -> np.ndarray:
    if raw.index.name == "row":
        return np.asarray(raw.index)
    return np.arange(1, len(raw) + 1)


def _column_error(source: str, name: str, what: str, raw: pd.Series, bad: np.ndarray, rows: np.ndarray
                  ) -> DataFileError:
    first = int(np.flatnonzero(bad)[0])
    return DataFileError(f"file {source}: column {name!r}: no value could be parsed as {what} "
                         f"(first bad value {str(raw.iloc[first])!r} at row {rows[first]})")


def clean_transactions(
    raw: pd.DataFrame,
    source: str,
    *,
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Type, validate and de-duplicate raw transaction rows.

    Args:
        raw: rows with at least event_id, customer_id, timestamp and amount (e.g. from
            :func:`segstream.trainer.loading.load_transactions`).
        source: the file name, quoted in messages and the report.
        max_future_skew_s: rows timed more than this after ``now`` are dropped as in the future; 0 keeps them.
        now: the clock those are measured from (default: the current time).

    Returns:
        The cleaned frame (event_id str, customer_id str, timestamp datetime64[ns, UTC], amount float64,
        then the optional canonical columns and any other columns, sorted by timestamp then event_id,
        fresh RangeIndex) and the report.

    Raises:
        DataFileError: a required column is missing, the input has no rows, a whole column cannot be
            parsed (the message gives the first bad value and its row), or no row survives.
    """
    for name in REQUIRED:
        if name not in raw.columns:
            raise DataFileError(f"file {source}: required column {name!r} is missing "
                                f"(columns: {', '.join(map(str, raw.columns))})")
    if len(raw) == 0:
        raise DataFileError(f"file {source}: no data rows")
    rows = _rows(raw)
    event_id = _text(raw["event_id"])
    customer = _text(raw["customer_id"])
    stamp = parse_timestamps(raw["timestamp"])
    amount = parse_amounts(raw["amount"])

    if customer.isna().all():
        raise DataFileError(f"file {source}: column 'customer_id': every value is empty")
    bad_ts = stamp.isna().to_numpy()
    if bad_ts.all():
        raise _column_error(source, "timestamp", "a timestamp", raw["timestamp"], bad_ts, rows)
    bad_amount = amount.isna().to_numpy()
    if bad_amount.all():
        raise _column_error(source, "amount", "a number", raw["amount"], bad_amount, rows)

    future = np.zeros(len(raw), dtype=bool)
    if max_future_skew_s > 0:
        clock = pd.Timestamp.now(tz="UTC") if now is None else now
        limit = clock + pd.Timedelta(seconds=max_future_skew_s)
        future = (stamp > limit).to_numpy(dtype=bool, na_value=False)
    checks = {
        "missing_event_id": (event_id.isna().to_numpy(), None),
        "missing_customer_id": (customer.isna().to_numpy(), None),
        "unparseable_timestamp": (bad_ts, raw["timestamp"]),
        "future_timestamp": (future, raw["timestamp"]),
        "unparseable_amount": (bad_amount, raw["amount"]),
    }
    dropped: dict[str, int] = {}
    first_bad: dict[str, str] = {}
    gone = np.zeros(len(raw), dtype=bool)
    for key, (mask, values) in checks.items():
        hit = mask & ~gone
        dropped[key] = int(hit.sum())
        if dropped[key]:
            i = int(np.flatnonzero(hit)[0])
            first_bad[key] = f"row {rows[i]}" + ("" if values is None else f": {str(values.iloc[i])!r}")
        gone |= mask
    dup = np.zeros(len(raw), dtype=bool)
    dup[~gone] = event_id[~gone].duplicated(keep="first").to_numpy()
    dropped["duplicate_event"] = int(dup.sum())
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first_bad["duplicate_event"] = f"row {rows[i]}: {event_id.iloc[i]!r}"
    keep = ~(gone | dup)
    if not keep.any():
        raise DataFileError(f"file {source}: no row is usable after cleaning ("
                            + ", ".join(f"{REASONS[k]}: {v}" for k, v in dropped.items() if v) + ")")

    out = pd.DataFrame({
        "event_id": event_id[keep].astype("str"),
        "customer_id": customer[keep].astype("str"),
        "timestamp": stamp[keep],
        "amount": amount[keep],
    })
    for name in OPTIONAL:
        if name in raw.columns:
            col = raw[name][keep]
            out[name] = pd.to_numeric(_text(col), errors="coerce") if name == "quantity" else _text(col)
    for name in raw.columns:
        if name not in out.columns:
            out[name] = raw[name][keep]
    out = out.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)
    report = CleaningReport(
        source=source,
        input_rows=len(raw),
        kept_rows=len(out),
        dropped=dropped,
        first_bad=first_bad,
        zero_amount_rows=int((out["amount"] == 0).sum()),
        return_rows=int((out["amount"] < 0).sum()),
        customers=int(out["customer_id"].nunique()),
        first_timestamp=out["timestamp"].iloc[0].isoformat(),
        last_timestamp=out["timestamp"].iloc[-1].isoformat(),
    )
    return out, report
