"""Training on a large history without bringing its rows into Python: the GROUP BY pushed down to DuckDB.

``segstream train --sql QUERY [--db duckdb:///orders.duckdb] --pushdown``. The in-memory path reads every
row into pandas, cleans it and aggregates it; at 10M rows that is gigabytes. Here the query's rows stay in
DuckDB and only aggregates come back: one row per customer per cutoff (:class:`DuckDBHistory` is a
:class:`~segstream.trainer.history.History`), and one row per day and segment for the forecasts.

Cleaning stays exact, the same as the in-memory path's on the same rows:

1. DuckDB marks each row *surely valid* with predicates that can only hold for a row the contract accepts
   and whose values it reads exactly as Python would (ids of printable ASCII without spaces, a typed or
   epoch-ms timestamp in range, a finite amount within bounds that is not an exact half-cent tie, an
   optional field within bounds, no ``lines``, and an event id no other row shares even after dropping
   every character outside printable ASCII).
2. Every other row (*suspect*: usually a handful) is fetched and judged by the trainer's own cleaning
   (:func:`segstream.trainer.cleaning.prepare_rows`) among the suspect rows, in the query's row order, so a
   duplicate keeps its first occurrence and every dropped row has its reason and row number.
3. The kept suspect rows go back into DuckDB beside the surely valid ones, and everything else (the
   aggregates, the daily sales, the cleaning report's counts) is computed there over that clean set.

Amounts are summed in integer cents (``round(amount * 100)``, ties excluded above, so DuckDB's rounding and
numpy's agree), timestamps are integer epoch ms, so the aggregates equal
:func:`segstream.models.features.batch_aggregates` on the same clean rows exactly.

Limits: DuckDB only (a PostgreSQL table can be read by DuckDB-side SQL over an export, or trained with the
in-memory path); the query must give an ``event_id`` column (ids derived from row contents are computed in
Python) and no preset; product preferences need the in-memory path.
"""

# ruff: noqa: S608 - the SQL here is the user's own --sql query wrapped in statements built from quoted
# column names and integer literals; nothing else from outside is spliced into it.
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from segstream.models.contract import DEFAULT_LIMITS, MAX_ABS_AMOUNT, MAX_ID_LENGTH, REASONS, EventLimits
from segstream.models.event_frame import VALID
from segstream.models.features import AGGREGATE_FIELDS, DAY_MS, NO_TIMESTAMP, WINDOWS_DAYS
from segstream.trainer.cleaning import CleaningReport, prepare_rows
from segstream.trainer.errors import DataFileError
from segstream.trainer.history import CachedHistory, daily_sales_of_groups, to_timestamp
from segstream.trainer.loading import CANONICAL, OPTIONAL, REQUIRED, column_sources
from segstream.trainer.sql_source import SqlSource

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOATING = ("FLOAT", "DOUBLE", "REAL")
_GRAPHIC = r"[\x21-\x7e]"  # printable ASCII without the space: an id made only of these is valid as it is
_ISO = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?"
# An optional text this short is within the contract's bound however Python spells the value.
_SAFE_TEXT = 100


class PushdownError(DataFileError):
    """The query cannot be trained with ``--pushdown`` (the message says why and what to do instead)."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _kind(sql_type: str) -> str:
    t = sql_type.upper()
    if t in _INTEGER:
        return "integer"
    if t in _FLOATING or t.startswith("DECIMAL") or t.startswith("NUMERIC"):
        return "number"
    if t in ("VARCHAR", "TEXT", "STRING") or t.startswith("VARCHAR"):
        return "text"
    if t in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "DATETIME"):
        return "timestamp"
    if t in ("TIMESTAMP_S", "TIMESTAMP_MS", "DATE"):
        return "timestamp_cast"
    if t == "TIMESTAMP_NS":
        return "timestamp_ns"
    return "other"


def _identifier(col: str, kind: str, has_nulls: bool) -> tuple[str, str, str]:
    """(value, surely-valid, duplicate key) expressions for an id column."""
    if kind == "text":
        ok = f"regexp_full_match({col}, '{_GRAPHIC}{{1,{MAX_ID_LENGTH}}}')"
        # Python strips whitespace before comparing ids; dropping every non-graphic character maps any
        # spelling Python could read as a valid id onto that id, so such a pair is always suspect.
        return col, ok, f"CASE WHEN {ok} THEN {col} ELSE regexp_replace({col}, '[^\\x21-\\x7e]', '', 'g') END"
    value = f"CAST({col} AS VARCHAR)"
    # pandas reads an integer column with NULLs as floats ("7.0"): then every row is judged in Python.
    ok = "TRUE" if kind == "integer" and not has_nulls else "FALSE"
    return value, ok, value


def _timestamp_ms(col: str, kind: str) -> tuple[str, str]:
    """(epoch-ms value, surely-read) expressions; only non-negative times (floor and truncation agree)."""
    if kind in ("timestamp", "timestamp_cast"):
        source = col if kind == "timestamp" else f"CAST({col} AS TIMESTAMP)"
        return f"(epoch_us({source}) // 1000)", f"epoch_us({source}) >= 0"
    if kind == "timestamp_ns":
        return f"(epoch_ns({col}) // 1000000)", f"epoch_ns({col}) >= 0"
    if kind == "integer":
        return f"CAST({col} AS BIGINT)", "TRUE"
    if kind == "number":
        number = f"CAST({col} AS DOUBLE)"
        ok = f"isfinite({number}) AND {number} = floor({number}) AND abs({number}) < 9e15"
        return f"CAST(CASE WHEN {ok} THEN {number} END AS BIGINT)", ok
    if kind == "text":
        digits = f"regexp_full_match({col}, '[0-9]{{1,15}}')"
        # Plain ISO 8601 (what a CSV export writes) reads the same in DuckDB (session zone UTC, like
        # pandas' utc=True for a time without offset) and in pandas; anything fancier is judged in Python.
        iso = f"regexp_full_match({col}, '{_ISO}')"
        value = (f"CASE WHEN {digits} THEN TRY_CAST({col} AS BIGINT) "
                 f"WHEN {iso} THEN epoch_us(TRY_CAST({col} AS TIMESTAMPTZ)) // 1000 END")  # fmt: skip
        ok = f"({digits} OR ({iso} AND epoch_us(TRY_CAST({col} AS TIMESTAMPTZ)) >= 0))"
        return value, ok
    return "CAST(NULL AS BIGINT)", "FALSE"


def _amount(col: str, kind: str) -> tuple[str, str]:
    """(double value, surely-read) expressions for the amount."""
    if kind in ("integer", "number"):
        value = f"CAST({col} AS DOUBLE)"
        ok = "TRUE"
    elif kind == "text":
        # At most 14 significant digits: both parsers then round the decimal to the same double.
        value = f"TRY_CAST({col} AS DOUBLE)"
        ok = f"regexp_full_match({col}, '-?[0-9]{{1,10}}([.][0-9]{{1,4}})?')"
    else:
        return "CAST(NULL AS DOUBLE)", "FALSE"
    # Not an exact half-cent: there DuckDB's round (half away from zero) and numpy's rint differ.
    ok += (f" AND isfinite({value}) AND abs({value}) <= {MAX_ABS_AMOUNT!r} AND "
           f"{value} * 100 - floor({value} * 100) <> 0.5")  # fmt: skip
    return value, ok


@dataclass(frozen=True)
class PushdownStats:
    """How the rows were handled: aggregated in DuckDB or judged in Python."""

    rows: int
    surely_valid: int
    judged_in_python: int
    seconds: float

    def render(self) -> str:
        return (f"pushdown: {self.surely_valid:,} of {self.rows:,} rows checked and aggregated in DuckDB, "
                f"{self.judged_in_python:,} judged by the trainer's cleaning ({self.seconds:.1f}s)")  # fmt: skip


class DuckDBHistory(CachedHistory):
    """A query's clean rows kept in DuckDB; a :class:`~segstream.trainer.history.History`.

    Args:
        source: The query and its DuckDB database (a file is attached read-only).
        mapping: ``--map`` canonical -> source column.
        limits: The contract's bounds (``Settings.event_limits()``).
        now: The clock of the future-skew check (default: the current time).

    Raises:
        PushdownError: no event_id column, not DuckDB, or a mapping that cannot be used.
        DataFileError: the query fails, returns no rows, misses a required column, or no row is usable.
    """

    def __init__(self, source: SqlSource, mapping: dict[str, str] | None = None, *,
                 limits: EventLimits = DEFAULT_LIMITS, now: pd.Timestamp | None = None) -> None:  # fmt: skip
        if not source.is_duckdb:
            raise PushdownError(f"{source.label()}: --pushdown runs the aggregation in DuckDB; for this database "
                                "train without --pushdown (the rows are read into memory)")  # fmt: skip
        super().__init__()
        started = time.perf_counter()
        self.source = source
        self.where = source.label()
        self._con = self._connect(source)
        try:
            self._load(mapping or {}, limits, pd.Timestamp.now(tz="UTC") if now is None else now)
        except duckdb.Error as exc:
            self._con.close()
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataFileError(f"{self.where}: the query failed: {text}") from None
        self.stats = PushdownStats(self._input_rows, self._surely, self._judged, time.perf_counter() - started)

    # ---------------------------------------------------------------- loading
    @staticmethod
    def _connect(source: SqlSource) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        path = source.duckdb_path()
        if path != ":memory:":
            if not Path(path).exists():
                con.close()
                raise DataFileError(f"{source.label()}: no such database file {path}")
            # Attached read-only and made the default, so the query's table names resolve as with
            # `duckdb.connect(path, read_only=True)`, while our work tables live in memory.
            con.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS history (READ_ONLY)")
            con.execute("USE history")
        return con

    def _load(self, mapping: dict[str, str], limits: EventLimits, now: pd.Timestamp) -> None:
        con, where = self._con, self.where
        if not self.source.query.strip():
            raise DataFileError(f"{where}: the query is empty")
        described = con.execute(f"DESCRIBE SELECT * FROM ({self.source.query}) AS q").fetchall()
        types = {str(row[0]).strip(): str(row[1]) for row in described}
        empty = pd.DataFrame(columns=list(types))
        sources = {name: name for name in CANONICAL if name in types}
        sources.update(column_sources(empty, where, mapping))
        sources = {k: v for k, v in sources.items() if k in CANONICAL}
        for name in REQUIRED[1:]:
            if name not in sources:
                raise DataFileError(f"{where}: required column {name!r} is missing (columns: "
                                    f"{', '.join(types)}); use --map {name}=<column> to name it")  # fmt: skip
        if "event_id" not in sources:
            raise PushdownError(f"{where}: --pushdown needs an event_id column (ids derived from whole rows are "
                                "computed in Python); map one with --map event_id=<column>, or train without "
                                "--pushdown")  # fmt: skip
        # Raw rows, numbered in the query's order (the in-memory path's "file order" and row numbers).
        select = ", ".join(f"{_q(src)} AS {_q(name)}" for name, src in sources.items())
        con.execute(f"CREATE TEMP TABLE __src AS SELECT row_number() OVER () AS __row, {select} "
                    f"FROM ({self.source.query}) AS q")  # fmt: skip
        self._input_rows = int(con.execute("SELECT count(*) FROM __src").fetchone()[0])  # type: ignore[index]
        if self._input_rows == 0:
            raise DataFileError(f"{where}: the query returned no rows (columns: {', '.join(types)})")
        kinds = {name: _kind(types[src]) for name, src in sources.items()}
        nulls = {name: con.execute(f"SELECT count(*) - count({_q(name)}) FROM __src").fetchone()[0]  # type: ignore[index]
                 for name in ("event_id", "customer_id") if kinds[name] == "integer"}  # fmt: skip
        self._judge(kinds, nulls, limits, int(now.value // 1_000_000))
        self._clean_suspects(limits, now)
        con.execute("DROP TABLE __src")
        con.execute("DROP TABLE __judged")
        summary = con.execute("SELECT count(*), min(ts_ms), max(ts_ms) FROM __clean").fetchone()
        assert summary is not None
        if int(summary[0]) == 0:
            raise DataFileError(f"{where}: no row is usable after cleaning ("
                                + ", ".join(f"{k}: {v}" for k, v in self._dropped.items()) + ")")
        self._rows, self._first_ms, self._last_ms = int(summary[0]), int(summary[1]), int(summary[2])

    def _judge(self, kinds: dict[str, str], nulls: dict[str, int], limits: EventLimits, now_ms: int) -> None:
        eid, eid_ok, eid_key = _identifier('"event_id"', kinds["event_id"], bool(nulls.get("event_id")))
        cid, cid_ok, _ = _identifier('"customer_id"', kinds["customer_id"], bool(nulls.get("customer_id")))
        ts, ts_ok = _timestamp_ms('"timestamp"', kinds["timestamp"])
        amount, amount_ok = _amount('"amount"', kinds["amount"])
        rules = [eid_ok, cid_ok, ts_ok, amount_ok, f"ts_ms >= {limits.min_ts_ms}", f"ts_ms < {limits.max_ts_ms}"]
        if limits.max_future_skew_ms > 0:
            rules.append(f"ts_ms - {now_ms} <= {limits.max_future_skew_ms}")
        if "quantity" in kinds:
            q = 'CAST("quantity" AS DOUBLE)'
            if kinds["quantity"] in ("integer", "number"):
                within = f"(isfinite({q}) AND abs({q}) <= {MAX_ABS_AMOUNT!r})"
            elif kinds["quantity"] == "text":  # at most 9 digits is within the bound however it is parsed
                within = "regexp_full_match(\"quantity\", '-?[0-9]{1,9}')"
            else:
                within = "FALSE"
            rules.append(f'("quantity" IS NULL OR {within})')
        for name in OPTIONAL:
            if name in kinds and name not in ("quantity", "lines"):
                rules.append(f'({_q(name)} IS NULL OR length(CAST({_q(name)} AS VARCHAR)) <= {_SAFE_TEXT})')
        if "lines" in kinds:
            rules.append('"lines" IS NULL')  # lines are parsed and checked against the amount in Python
        surely = " AND ".join(f"({r})" for r in rules)
        self._con.execute(f"""
            CREATE TEMP TABLE __judged AS
            WITH typed AS (
                SELECT *, {eid} AS eid, {cid} AS cid, {ts} AS ts_ms, {amount} AS amt, {eid_key} AS eid_key
                FROM __src
            )
            SELECT __row, eid, cid, ts_ms, amt,
                   COALESCE({surely}, FALSE) AND count(*) OVER (PARTITION BY eid_key) = 1 AS surely
            FROM typed
        """)  # fmt: skip
        self._con.execute("""
            CREATE TEMP TABLE __clean AS
            SELECT eid, cid, ts_ms, amt, CAST(round(amt * 100) AS BIGINT) AS cents FROM __judged WHERE surely
        """)
        self._surely = int(self._con.execute("SELECT count(*) FROM __clean").fetchone()[0])  # type: ignore[index]

    def _clean_suspects(self, limits: EventLimits, now: pd.Timestamp) -> None:
        """Judge the rows DuckDB could not vouch for with the trainer's cleaning; keep the good ones."""
        raw = self._con.execute("""
            SELECT s.* FROM __src AS s JOIN (SELECT __row FROM __judged WHERE NOT surely) USING (__row)
            ORDER BY __row
        """).df()
        self._judged = int(len(raw))
        self._dropped: dict[str, int] = {}
        self._first_bad: dict[str, str] = {}
        if raw.empty:
            return
        raw.index = pd.Index(raw.pop("__row").to_numpy(dtype=np.int64), name="row")
        prepared = prepare_rows(raw, self.where, limits=limits, now=now)
        codes = prepared.codes
        counted = {c: int(n) for c, n in zip(*np.unique(codes[codes != VALID], return_counts=True), strict=True)}
        self._dropped = {c: counted[c] for c in REASONS if c in counted}
        self._first_bad = {c: prepared.first_rows(c, 1)[0] for c in self._dropped}
        keep = codes == VALID
        if not keep.any():
            return
        amount = prepared.amount[keep]
        kept = pd.DataFrame({  # noqa: F841 - read by DuckDB below, by name
            "eid": prepared.event_id[keep].astype(str).to_numpy(),
            "cid": prepared.customer_id[keep].astype(str).to_numpy(),
            "ts_ms": prepared.ts_ms[keep].astype(np.int64),
            "amt": amount,
            "cents": np.rint(amount * 100).astype(np.int64),
        })
        self._con.register("__kept", kept)
        self._con.execute("INSERT INTO __clean SELECT eid, cid, ts_ms, amt, cents FROM __kept")
        self._con.unregister("__kept")

    # ---------------------------------------------------------------- History
    def _aggregate(self, as_of_ms: int) -> pd.DataFrame:
        """One GROUP BY over the clean rows at or before ``as_of_ms``, the columns of ``batch_aggregates``."""
        as_of_day = as_of_ms // DAY_MS
        purchase = "cents >= 0"
        columns = [
            "min(ts_ms) AS first_ts",
            "max(ts_ms) AS last_ts",
            f"COALESCE(min(ts_ms) FILTER ({purchase}), {NO_TIMESTAMP}) AS first_purchase_ts",
            f"COALESCE(max(ts_ms) FILTER ({purchase}), {NO_TIMESTAMP}) AS last_purchase_ts",
            f"count(*) FILTER ({purchase}) AS purchases",
            f"CAST(COALESCE(sum(cents) FILTER ({purchase}), 0) AS BIGINT) AS gross_cents",
            "CAST(sum(cents) AS BIGINT) AS net_cents",
            "count(*) FILTER (cents < 0) AS returns",
            "CAST(COALESCE(-sum(cents) FILTER (cents < 0), 0) AS BIGINT) AS returns_cents",
        ]
        for w in WINDOWS_DAYS:
            columns.append(f"CAST(COALESCE(sum(cents) FILTER (ts_ms // {DAY_MS} > {as_of_day - w}), 0) AS BIGINT)"
                           f" AS net_cents_{w}d")  # fmt: skip
        for w in WINDOWS_DAYS:
            columns.append(f"count(*) FILTER (ts_ms // {DAY_MS} > {as_of_day - w} AND {purchase}) AS purchases_{w}d")
        frame = self._con.execute(
            f"SELECT cid AS customer_id, {', '.join(columns)} FROM __clean WHERE ts_ms <= {int(as_of_ms)} GROUP BY cid"
        ).df()
        out = frame.set_index("customer_id")[list(AGGREGATE_FIELDS)].astype(np.int64).sort_index()
        out.index = out.index.astype(str)
        out.index.name = "customer_id"
        out.attrs["as_of_ms"] = int(as_of_ms)
        return out

    def daily_sales(self, segments: pd.Series) -> pd.DataFrame:
        """Net sales per UTC day, in total and per segment: a GROUP BY (day, segment) joined to the labels,
        the in-memory path's integer sums (:func:`segstream.trainer.history.daily_sales_of_groups`)."""
        labels = pd.DataFrame({"cid": segments.index.astype(str), "segment": segments.to_numpy()})  # noqa: F841
        self._con.register("__labels", labels)
        try:
            groups = self._con.execute(f"""
                SELECT c.ts_ms // {DAY_MS} AS day, CAST(l.segment AS DOUBLE) AS segment,
                       CAST(sum(c.cents) AS BIGINT) AS cents
                FROM __clean AS c LEFT JOIN __labels AS l USING (cid) GROUP BY ALL
            """).df()  # fmt: skip
        finally:
            self._con.unregister("__labels")
        return daily_sales_of_groups(groups)

    def fingerprint(self) -> dict[str, Any]:
        """Rows, customers, time span, and an order-independent hash of the clean rows' contents (DuckDB's
        64-bit row hash, xor-ed): the in-memory path hashes the rows in its sorted order instead."""
        row = self._con.execute(
            "SELECT count(DISTINCT cid), bit_xor(hash(eid, cid, ts_ms, cents)) FROM __clean"
        ).fetchone()
        assert row is not None
        return {
            "rows": self._rows,
            "customers": int(row[0]),
            "first_timestamp": str(to_timestamp(self._first_ms)),
            "last_timestamp": str(to_timestamp(self._last_ms)),
            "duckdb_xor_hash": f"{int(row[1]):016x}",
        }

    def cleaning_report(self) -> CleaningReport:
        """The cleaning report the in-memory path would give for the same rows."""
        row = self._con.execute(
            "SELECT count(*) FILTER (amt = 0), count(*) FILTER (amt < 0), count(DISTINCT cid) FROM __clean"
        ).fetchone()
        assert row is not None
        return CleaningReport(
            source=str(self.source),
            input_rows=self._input_rows,
            kept_rows=self._rows,
            dropped=dict(self._dropped),
            first_bad=dict(self._first_bad),
            zero_amount_rows=int(row[0]),
            return_rows=int(row[1]),
            customers=int(row[2]),
            first_timestamp=to_timestamp(self._first_ms).isoformat(),
            last_timestamp=to_timestamp(self._last_ms).isoformat(),
        )

    def close(self) -> None:
        self._con.close()
