"""Turn raw transaction rows into typed, valid, de-duplicated events, and say what was dropped and why.

What counts as valid is the event contract the worker applies (:mod:`segstream.models.contract`, applied
to a table by :func:`segstream.models.event_frame.judge_rows`): the same rules, the same limits (from the
events settings) and the same reason codes, so whatever ``train`` keeps the worker accepts, and the other
way round. Each dropped row is counted under exactly one reason, the first rule it breaks in the worker's
order (event id, customer id, timestamp, amount, quantity, optional text fields, then the future-skew
check). Duplicates (``duplicate_event``) are looked for only among rows that passed the other checks; the
first occurrence in file order is kept.

How cells are read (the file's dialect; the JSON a replay sends is the value read, never the raw cell):
text is stripped and a blank cell is missing. Timestamps: ISO 8601 (an offset is converted to UTC; a
value without one is taken as UTC), or epoch milliseconds given as an integer or a string of digits
(digits always mean epoch milliseconds). ISO text outside 1677-2262 (what pandas can hold) counts as
unparseable. Amounts: any number; NaN, inf and text that is not a number count as unparseable. Zero
amounts are kept (and counted), negative amounts are returns (kept and counted).

Rows are named by the 1-based data row number: the frame's index when it is named ``row`` (as
:func:`segstream.trainer.loading.load_transactions` returns it), otherwise the position plus one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from segstream.models.contract import DEFAULT_LIMITS, OPTIONAL_TEXT, REASONS, EventLimits, describe
from segstream.models.event_frame import VALID, CandidateRows, decode_lines, judge_rows
from segstream.trainer.errors import DataFileError
from segstream.trainer.loading import OPTIONAL, REQUIRED

__all__ = ["REASONS", "CleaningReport", "PreparedRows", "clean_prepared", "clean_transactions", "prepare_rows",
           "parse_amounts", "parse_timestamps"]  # fmt: skip

# pandas' datetime64[ns] range: ISO text outside it cannot be read here (the contract's bounds lie inside).
_MIN_TS = pd.Timestamp.min.tz_localize("UTC")
_MAX_TS = pd.Timestamp.max.tz_localize("UTC")


@dataclass(frozen=True)
class CleaningReport:
    """What cleaning kept and dropped, by reason.

    Attributes:
        source: the file (or other source) the rows came from.
        input_rows: rows before cleaning.
        kept_rows: rows after cleaning.
        dropped: reason code (see :data:`segstream.models.contract.REASONS`) -> rows dropped for it.
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
        for key, count in self.dropped.items():
            if count:
                where = f"   first at {self.first_bad[key]}" if key in self.first_bad else ""
                lines.append(f"  {'dropped: ' + describe(key):<32}{count:>12,}  [{key}]{where}")
        if not self.dropped_rows:
            lines.append(f"  {'dropped':<32}{0:>12,}")
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
    """Epoch milliseconds (numbers or digit strings) as float64; not whole numbers -> NaN."""
    ms = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(ms) & (ms == np.floor(ms)), ms, np.nan)


def _datetimes_ms(stamps: pd.Series) -> np.ndarray:
    """Tz-aware UTC timestamps of any unit to epoch ms as float64 (NaT -> NaN), flooring sub-millisecond."""
    # Whatever unit pandas chose (ISO text of year 1 comes back in seconds), milliseconds hold it; numpy's
    # unit cast floors, as the stream's integer arithmetic does.
    ms = np.asarray(stamps.dt.tz_convert(None).to_numpy()).astype("datetime64[ms]")
    out = np.full(len(ms), np.nan)
    ok = ~np.isnat(ms)
    out[ok] = ms[ok].astype("int64").astype("float64")
    return out


def parse_timestamps_ms(col: pd.Series) -> np.ndarray:
    """Parse a raw timestamp column to epoch milliseconds (float64); what cannot be read becomes NaN.

    Nothing is judged here: a time far in the past or the future is read as it is, and the contract's
    range check (:func:`segstream.models.event_frame.judge_rows`) decides.
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return _datetimes_ms(col.dt.tz_convert("UTC"))
    if pd.api.types.is_datetime64_dtype(col.dtype):
        return _datetimes_ms(col.dt.tz_localize("UTC"))
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return _epoch_ms(col)
    text = _text(col)
    digits = text.str.fullmatch(r"-?\d+").to_numpy(dtype=bool, na_value=False)
    rest = text.notna().to_numpy() & ~digits
    values = np.full(len(col), np.nan)
    if digits.any():
        values[digits] = _epoch_ms(text[digits])
    if rest.any():
        values[rest] = _datetimes_ms(pd.to_datetime(text[rest], format="ISO8601", utc=True, errors="coerce"))
    return values


def _ms_to_stamps(ms: np.ndarray, index: pd.Index) -> pd.Series:
    ok = np.isfinite(ms) & (ms >= _MIN_TS.value // 1_000_000) & (ms <= _MAX_TS.value // 1_000_000)
    out = np.full(len(ms), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ok] = (ms[ok].astype("int64") * 1_000_000).astype("datetime64[ns]")
    return pd.Series(pd.DatetimeIndex(out).tz_localize("UTC"), index=index)


def parse_timestamps(col: pd.Series) -> pd.Series:
    """Parse a raw timestamp column to ``datetime64[ns, UTC]``; what cannot be read becomes NaT.

    Args:
        col: datetimes, epoch milliseconds (numbers or digit strings) or ISO 8601 strings.

    Returns:
        A Series with the same index (millisecond precision, as events carry).
    """
    return _ms_to_stamps(parse_timestamps_ms(col), col.index)


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


def _where(source: str) -> str:
    """How a message names the source: ``file orders.csv``, or a SQL source's own ``query on ...`` label."""
    return source if source.startswith("query on ") else f"file {source}"


def _column_error(source: str, name: str, what: str, raw: pd.Series, bad: np.ndarray, rows: np.ndarray
                  ) -> DataFileError:
    first = int(np.flatnonzero(bad)[0])
    return DataFileError(f"{_where(source)}: column {name!r}: no value could be parsed as {what} "
                         f"(first bad value {str(raw.iloc[first])!r} at row {rows[first]})")


@dataclass(frozen=True)
class PreparedRows:
    """Every row of a file read into event fields and judged by the contract, none dropped yet.

    Attributes:
        raw: The rows as loaded.
        rows: 1-based data row numbers, for messages.
        event_id: Stripped text (``NA`` where blank).
        customer_id: Stripped text (``NA`` where blank).
        ts_ms: Epoch ms (float64, NaN where unreadable).
        amount: float64 (NaN where unreadable).
        codes: The worker's reason code per row (``""`` = accepted; ``duplicate_event`` marks a repeat of an
            earlier accepted row's event id).
    """

    raw: pd.DataFrame
    rows: np.ndarray
    event_id: pd.Series
    customer_id: pd.Series
    ts_ms: np.ndarray
    amount: np.ndarray
    codes: np.ndarray

    def record(self, i: int) -> dict[str, object]:
        """Row ``i`` (0-based) as the JSON event a replay would send: the values read from its cells, and
        for a cell that could not be read its stripped text, so the worker judges what the file holds.

        Valid rows are sent from the clean frame instead (:func:`segstream.streams.replay.records_from_frame`);
        this serves the rows the contract refuses (``replay --send-invalid``) and the parity test.
        """
        raw = self.raw.iloc[i]
        out: dict[str, object] = {}
        for name, value in (("event_id", self.event_id.iloc[i]), ("customer_id", self.customer_id.iloc[i])):
            if not pd.isna(value):
                out[name] = str(value)
        for name, value in (("timestamp", self.ts_ms[i]), ("amount", self.amount[i])):
            if np.isfinite(value):
                out[name] = int(value) if name == "timestamp" else float(value)
            elif (text := _cell_text(raw[name])) is not None:
                out[name] = text
        if "lines" in self.raw.columns and (lines := decode_lines(raw["lines"])) is not None:
            out["lines"] = lines
        for name in (*OPTIONAL_TEXT, "store_id", "quantity"):
            if name in self.raw.columns and (text := _cell_text(raw[name])) is not None:
                if name != "quantity":
                    out[name] = text
                elif np.isfinite(q := float(pd.to_numeric(text, errors="coerce"))):
                    out[name] = int(q) if q.is_integer() and abs(q) < 2**53 else q
        return out

    def first_rows(self, code: str, limit: int = 3) -> list[str]:
        """Where ``code`` first happened, as ``"row 7: 'abc'"`` strings."""
        column = _REASON_COLUMN.get(code)
        out = []
        for i in np.flatnonzero(self.codes == code)[:limit]:
            shown = "" if column is None or column not in self.raw.columns else f": {str(self.raw[column].iloc[i])!r}"
            out.append(f"row {self.rows[i]}{shown}")
        return out


# The column a reason is about, quoted beside the row number in reports.
_REASON_COLUMN = {
    "invalid_event_id": "event_id", "invalid_customer_id": "customer_id", "invalid_timestamp": "timestamp",
    "timestamp_out_of_range": "timestamp", "timestamp_in_future": "timestamp", "invalid_amount": "amount",
    "amount_out_of_range": "amount", "invalid_quantity": "quantity", "duplicate_event": "event_id",
    "invalid_lines": "lines",
}  # fmt: skip


def prepare_rows(
    raw: pd.DataFrame,
    source: str,
    *,
    limits: EventLimits = DEFAULT_LIMITS,
    now: pd.Timestamp | None = None,
) -> PreparedRows:
    """Read every row's cells into event fields and give each the reason the worker would refuse it for.

    Args:
        raw: rows with at least event_id, customer_id, timestamp and amount.
        source: the file name, quoted in messages.
        limits: the contract's bounds (``Settings.event_limits()``); ``max_future_skew_ms`` 0 keeps rows
            timed after ``now``.
        now: the clock the future-skew check measures from (default: the current time).

    Raises:
        DataFileError: a required column is missing or the input has no rows.
    """
    for name in REQUIRED:
        if name not in raw.columns:
            raise DataFileError(f"{_where(source)}: required column {name!r} is missing "
                                f"(columns: {', '.join(map(str, raw.columns))})")
    if len(raw) == 0:
        raise DataFileError(f"{_where(source)}: no data rows")
    ts_text = raw["timestamp"]
    amount_text = raw["amount"]
    candidate = CandidateRows(
        event_id=_text(raw["event_id"]),
        customer_id=_text(raw["customer_id"]),
        ts_ms=parse_timestamps_ms(ts_text),
        ts_missing=_blank(ts_text),
        amount=parse_amounts(amount_text).to_numpy(dtype="float64"),
        amount_missing=_blank(amount_text),
        quantity=(parse_amounts(raw["quantity"]).to_numpy(dtype="float64") if "quantity" in raw.columns
                  else np.full(len(raw), np.nan)),  # fmt: skip
        texts={name: _text(raw[name]) for name in (*OPTIONAL_TEXT, "store_id") if name in raw.columns},
        lines=raw["lines"] if "lines" in raw.columns else None,
    )
    clock = pd.Timestamp.now(tz="UTC") if now is None else now
    codes = judge_rows(candidate, limits, int(clock.value // 1_000_000))
    ok = codes == VALID
    dup = np.zeros(len(raw), dtype=bool)
    dup[ok] = candidate.event_id[ok].duplicated(keep="first").to_numpy()
    codes[dup] = "duplicate_event"
    return PreparedRows(raw, _rows(raw), candidate.event_id, candidate.customer_id, candidate.ts_ms,
                        candidate.amount, codes)  # fmt: skip


def _lines_text(cells: pd.Series) -> pd.Series:
    """Valid ``lines`` cells as compact JSON text (``NA`` where absent), whatever form the source held them in."""
    def one(cell: object) -> object:
        decoded = decode_lines(cell)
        return pd.NA if decoded is None else json.dumps(decoded, separators=(",", ":"), ensure_ascii=False)

    return pd.Series([one(c) for c in cells.to_numpy(dtype=object)], index=cells.index, dtype="string")


def _cell_text(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
        return None
    text = str(value).strip()
    return text or None


def _blank(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_datetime64_any_dtype(col.dtype):
        return col.isna().to_numpy()
    return _text(col).isna().to_numpy()


def clean_transactions(
    raw: pd.DataFrame,
    source: str,
    *,
    limits: EventLimits = DEFAULT_LIMITS,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Type, validate and de-duplicate raw transaction rows with the worker's contract.

    Args:
        raw: rows with at least event_id, customer_id, timestamp and amount (e.g. from
            :func:`segstream.trainer.loading.load_transactions`).
        source: the file name, quoted in messages and the report.
        limits: the contract's bounds, as the worker reads them (``Settings.event_limits()``).
        now: the clock the future-skew check measures from (default: the current time).

    Returns:
        The cleaned frame (event_id str, customer_id str, timestamp datetime64[ns, UTC], amount float64,
        then the optional canonical columns and any other columns, sorted by timestamp then event_id,
        fresh RangeIndex) and the report.

    Raises:
        DataFileError: a required column is missing, the input has no rows, a whole column cannot be
            parsed (the message gives the first bad value and its row), or no row survives.
    """
    return clean_prepared(prepare_rows(raw, source, limits=limits, now=now), source)


def clean_prepared(prepared: PreparedRows, source: str) -> tuple[pd.DataFrame, CleaningReport]:
    """:func:`clean_transactions` on rows already read and judged by :func:`prepare_rows`."""
    raw, rows, codes = prepared.raw, prepared.rows, prepared.codes
    if prepared.customer_id.isna().all():
        raise DataFileError(f"{_where(source)}: column 'customer_id': every value is empty")
    bad_ts = ~np.isfinite(prepared.ts_ms)
    if bad_ts.all():
        raise _column_error(source, "timestamp", "a timestamp", raw["timestamp"], bad_ts, rows)
    bad_amount = ~np.isfinite(prepared.amount)
    if bad_amount.all():
        raise _column_error(source, "amount", "a number", raw["amount"], bad_amount, rows)
    dropped = {code: int(n) for code, n in zip(*np.unique(codes[codes != VALID], return_counts=True), strict=True)}
    dropped = {code: dropped[code] for code in REASONS if code in dropped}  # the contract's order
    first_bad = {code: prepared.first_rows(code, 1)[0] for code in dropped}
    keep = codes == VALID
    if not keep.any():
        raise DataFileError(f"{_where(source)}: no row is usable after cleaning ("
                            + ", ".join(f"{describe(k)}: {v}" for k, v in dropped.items()) + ")")

    out = pd.DataFrame({
        "event_id": prepared.event_id[keep].astype("str"),
        "customer_id": prepared.customer_id[keep].astype("str"),
        "timestamp": _ms_to_stamps(prepared.ts_ms[keep], raw.index[keep]),
        "amount": prepared.amount[keep],
    }, index=raw.index[keep])
    for name in OPTIONAL:
        if name == "lines" and name in raw.columns:
            out[name] = _lines_text(raw[name][keep])
        elif name in raw.columns:
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
