"""``train --sql ... --pushdown``: DuckDB aggregates the history and only aggregates come back.

The pushdown must give the in-memory path's numbers exactly on the same rows: the cleaning report, the
per-customer aggregates at every cutoff training asks for, the daily sales, and so the whole bundle. Each
test runs both paths on one real DuckDB file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.cli.data import event_limits, load_and_clean
from segstream.cli.main import cli
from segstream.models.features import DAY_MS
from segstream.trainer.errors import DataFileError
from segstream.trainer.history import EventHistory
from segstream.trainer.pushdown import DuckDBHistory, PushdownError
from segstream.trainer.sql_source import SqlSource, normalise_url

_NOW = pd.Timestamp("2026-01-01", tz="UTC")


def _table(path: Path, frame: pd.DataFrame, name: str = "orders") -> Path:
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame")
    return path


def _both(db: Path, query: str = "SELECT * FROM orders") -> tuple[EventHistory, pd.DataFrame, DuckDBHistory]:
    source = SqlSource(query, normalise_url(str(db)))
    events, report = load_and_clean(source, (), None, echo=False)
    return EventHistory(events), report.to_dict(), DuckDBHistory(source, limits=event_limits())


def _assert_same(memory: EventHistory, report: dict, pushed: DuckDBHistory, cutoffs_days=(0, 45, 90, 180)) -> None:
    assert pushed.cleaning_report().to_dict() == report
    assert (pushed.rows, pushed.first_ms, pushed.last_ms) == (memory.rows, memory.first_ms, memory.last_ms)
    for days in cutoffs_days:
        as_of = memory.last_ms - days * DAY_MS
        if as_of < memory.first_ms:
            continue
        pd.testing.assert_frame_equal(pushed.aggregates(as_of), memory.aggregates(as_of), check_exact=True)
    customers = memory.aggregates(memory.last_ms).index
    labels = pd.Series(np.arange(len(customers)) % 3, index=customers)
    pd.testing.assert_frame_equal(pushed.daily_sales(labels), memory.daily_sales(labels), check_exact=True)


@pytest.fixture
def generated(tmp_path) -> Path:
    """A generated history with 5% of its rows spoiled (blank ids, bad values, duplicates)."""
    csv = tmp_path / "generated.csv"
    result = CliRunner().invoke(cli, ["generate", "--customers", "300", "--days", "400", "--dirty-fraction",
                                      "0.05", "--out", str(csv)])  # fmt: skip
    assert result.exit_code == 0, result.output
    db = tmp_path / "generated.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{csv}', all_varchar = true)")
    return db


def test_a_dirty_text_table_gives_the_in_memory_numbers(generated):
    memory, report, pushed = _both(generated)
    assert report["dropped_rows"] > 0
    # Plain ISO times and decimal amounts are checked in DuckDB; only the spoiled rows go to Python.
    assert 0 < pushed.stats.judged_in_python < 0.2 * pushed.stats.rows
    _assert_same(memory, report, pushed)


def test_a_typed_query_over_the_dirty_table_gives_the_in_memory_numbers(generated):
    query = """SELECT event_id, customer_id, TRY_CAST("timestamp" AS TIMESTAMPTZ) AS "timestamp",
                      TRY_CAST(amount AS DECIMAL(12, 2)) AS amount, TRY_CAST(quantity AS INTEGER) AS quantity,
                      category, channel FROM orders"""
    _assert_same(*_both(generated, query))


def test_real_cdnow_with_integer_ids_dates_and_decimals(tmp_path, public_data):
    db = tmp_path / "cdnow.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{public_data('cdnow-sample')}')")
    query = ("SELECT event_id, CAST(customer_id AS INTEGER) AS customer_id, CAST(\"timestamp\" AS DATE) AS "
             "\"timestamp\", CAST(amount AS DECIMAL(12, 2)) AS amount FROM orders")  # fmt: skip
    memory, report, pushed = _both(db, query)
    assert pushed.stats.judged_in_python == 0 and report["kept_rows"] == 6919
    _assert_same(memory, report, pushed)


# Rows only Python can judge, each next to a valid row it could be confused with.
_TRICKY = [
    ("e1", "c1", "2025-01-01T10:00:00Z", 10.0),
    (" e1", "c2", "2025-01-02T10:00:00Z", 11.0),  # the same id as e1 once stripped: a duplicate
    ("e2", "c1", "2025-01-03T10:00:00+05:30", 0.125),  # an exact half-cent: rounding conventions differ
    ("e3", "c\u00e9", "2025-01-04T10:00:00Z", 5.0),  # a non-ASCII customer id the contract accepts
    ("e4", "c 3", "2025-01-05", 5.0),  # a space in the id: refused
    ("e5", "c1", "1736000000000", -2.5),  # epoch milliseconds as text, a return
    ("e6", "c2", "2099-01-01T00:00:00Z", 5.0),  # too far in the future
    ("e7", "c2", "not a time", 5.0),
    ("e8", "c3", "2025-01-06T10:00:00.123456Z", float("nan")),
    ("e9", "c3", "2025-01-07T10:00:00Z", 2e9),  # beyond the amount bound
    ("e\u00a010", "c3", "2025-01-07T11:00:00Z", 3.0),  # a no-break space inside: refused
    ("e11", "c4", " 2025-01-08T10:00:00Z ", 4.0),  # padded text Python strips
    ("e12", "c4", "2025-01-08T12:00", 4.0),
]


def test_rows_only_python_can_judge_are_judged_by_python(tmp_path):
    frame = pd.DataFrame(_TRICKY, columns=["event_id", "customer_id", "timestamp", "amount"])
    frame["category"] = ["x" * 200 if i == 3 else "books" for i in range(len(frame))]
    memory, report, pushed = _both(_table(tmp_path / "tricky.duckdb", frame))
    assert report["dropped"] and pushed.stats.judged_in_python >= 8
    _assert_same(memory, report, pushed, cutoffs_days=(0, 2, 4))


_ids = st.sampled_from(["e1", "e2", "e3", " e1", "e1 ", "e 4", "", None, "e\u00e9"])
_row = st.tuples(
    _ids,
    st.sampled_from(["c1", "c2", " c1", "c\u00e9", "", None]),
    st.one_of(st.integers(0, 4_200_000_000_000), st.sampled_from([-1, 1_735_689_600_000])),
    st.one_of(st.floats(-2e9, 2e9), st.sampled_from([0.125, -0.375, 0.0, 19.99, 0.005, float("nan"), float("inf")])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, min_size=1, max_size=25))
def test_any_mix_of_rows_gives_the_in_memory_numbers(rows):
    frame = pd.DataFrame(rows, columns=["event_id", "customer_id", "ms", "amount"])
    frame["timestamp"] = pd.to_datetime(frame["ms"], unit="ms", utc=True)
    frame = frame.drop(columns="ms")
    with tempfile.TemporaryDirectory() as tmp:
        db = _table(Path(tmp) / "h.duckdb", frame)
        source = SqlSource("SELECT * FROM orders", normalise_url(str(db)))
        try:
            events, report = load_and_clean(source, (), None, echo=False)
        except DataFileError:  # no usable row: the pushdown refuses too
            with pytest.raises(DataFileError):
                DuckDBHistory(source, limits=event_limits())
            return
        _assert_same(EventHistory(events), report.to_dict(), DuckDBHistory(source, limits=event_limits()),
                     cutoffs_days=(0, 1, 30))  # fmt: skip


def test_train_with_pushdown_writes_the_same_bundle(tmp_path, public_data):
    db = tmp_path / "cdnow.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{public_data('cdnow-sample')}')")
    runner = CliRunner()
    base = ["train", "--sql", "SELECT * FROM orders", "--db", str(db), "--k", "4"]
    memory = runner.invoke(cli, [*base, "--out", str(tmp_path / "memory")])
    pushed = runner.invoke(cli, [*base, "--pushdown", "--out", str(tmp_path / "pushed")])
    assert memory.exit_code == 0 and pushed.exit_code == 0, memory.output + pushed.output
    assert "checked and aggregated in DuckDB" in pushed.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pushed" / "customers.parquet"),
                                  pd.read_parquet(tmp_path / "memory" / "customers.parquet"))  # fmt: skip
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("memory", "pushed"))
    for section in ("segmentation", "classifier", "purchase", "forecast"):
        assert a["metrics"][section] == b["metrics"][section], section
    assert a["info"]["cleaning"] == b["info"]["cleaning"]
    assert a["info"]["segment_names"] == b["info"]["segment_names"]


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "orders.csv"], "--pushdown aggregates inside the database"),
    (["--sql", "SELECT * FROM orders", "--preset", "online-retail"], "does not apply presets"),
    (["--sql", "SELECT customer_id, timestamp, amount FROM orders"], "needs an event_id column"),
    (["--sql", "SELECT * FROM orders", "--db", "postgresql://u@localhost:1/x"], "runs the aggregation in DuckDB"),
    (["--sql", "SELECT * FROM orders", "--preferences"], "drop --pushdown"),
    (["--sql", "SELECT * FROM nowhere"], "the query failed"),
])  # fmt: skip
def test_what_pushdown_cannot_do_is_one_clear_message(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    _table(tmp_path / "o.duckdb", pd.DataFrame(_TRICKY[:1], columns=["event_id", "customer_id", "timestamp", "amount"]))
    pd.DataFrame(_TRICKY[:1], columns=["event_id", "customer_id", "timestamp", "amount"]).to_csv("orders.csv")
    if "--db" not in args and "--sql" in args:
        args = [*args, "--db", str(tmp_path / "o.duckdb")]
    result = CliRunner().invoke(cli, ["train", *args, "--pushdown", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_pushdown_error_is_a_data_file_error():
    assert issubclass(PushdownError, DataFileError)


def test_the_bench_table_with_its_spoiled_rows_gives_the_in_memory_numbers(tmp_path):
    from segstream.bench.training_scale import build_table

    db = tmp_path / "bench.duckdb"
    build_table(db, rows=20_000, customers=800)
    memory, report, pushed = _both(db)
    assert report["dropped"] == {"missing_customer_id": 100, "missing_amount": 100, "duplicate_event": 100}
    assert pushed.stats.judged_in_python == 600  # the 300 spoiled copies and the 300 rows they copy
    _assert_same(memory, report, pushed)
