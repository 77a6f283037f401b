"""``--sql QUERY --db URL``: a query result goes through the file path's mapping, presets and cleaning.

DuckDB is embedded, so these run against a real database file; PostgreSQL is covered by
tests/integration/test_sql_postgres.py against a real server.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.data import history_source, load_and_clean
from segstream.cli.main import cli
from segstream.trainer.errors import DataFileError
from segstream.trainer.sql_source import SqlSource, normalise_url, read_query


def _duckdb_table(path, name: str, frame: pd.DataFrame) -> None:
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")


@pytest.fixture
def cdnow(public_data):
    return public_data("cdnow-sample")


def test_a_duckdb_table_and_the_file_give_the_same_clean_events(tmp_path, cdnow):
    db = tmp_path / "orders.duckdb"
    with duckdb.connect(str(db)) as con:  # typed columns, as a real table has them
        con.execute(f"CREATE TABLE orders AS SELECT * FROM read_csv('{cdnow}')")
    from_file, _ = load_and_clean(str(cdnow), (), None, echo=False)
    from_table, report = load_and_clean(SqlSource("SELECT * FROM orders", normalise_url(str(db))), (), None,
                                        echo=False)  # fmt: skip
    pd.testing.assert_frame_equal(from_table.reset_index(drop=True), from_file.reset_index(drop=True))
    assert report.source.startswith("query on duckdb:///") and report.kept_rows == 6919


def test_a_duckdb_query_over_a_file_needs_no_database(cdnow):
    source = history_source(None, f"SELECT * FROM '{cdnow}' WHERE customer_id < '00100'", None)
    assert source.is_duckdb and source.database() == "duckdb (in memory)"
    events, _ = load_and_clean(source, (), None, echo=False)
    assert len(events) > 0 and (events["customer_id"] < "00100").all()


def test_map_and_the_online_retail_preset_apply_to_a_query(tmp_path):
    lines = pd.DataFrame({
        "InvoiceNo": ["A1", "A1", "C2"], "Quantity": [2, 1, -1], "UnitPrice": [1.5, 4.0, 4.0],
        "InvoiceDate": ["12/01/2010 08:26"] * 3, "CustomerID": ["17850", "17850", "17850"],
        "StockCode": ["X", "Y", "Y"], "Description": ["mug", "lamp", "lamp"],
    })  # fmt: skip
    db = tmp_path / "retail.duckdb"
    _duckdb_table(db, "lines", lines)
    source = SqlSource("SELECT * FROM lines", normalise_url(str(db)))
    events, _ = load_and_clean(source, (), "online-retail", echo=False)
    assert events.set_index("event_id")["amount"].to_dict() == {"A1": 7.0, "C2": -4.0}

    renamed = pd.DataFrame({"who": ["k1"], "when": ["2025-01-01T10:00:00Z"], "paid": [9.99]})
    _duckdb_table(db, "odd", renamed)
    mapped = SqlSource("SELECT * FROM odd", normalise_url(str(db)))
    events, _ = load_and_clean(mapped, ("customer_id=who", "timestamp=when", "amount=paid"), None, echo=False)
    assert events[["customer_id", "amount"]].values.tolist() == [["k1", 9.99]]


@pytest.mark.parametrize(("query", "db", "message"), [
    ("SELECT nope FROM orders", "orders", 'the query failed: Binder Error: Referenced column "nope"'),
    ("SELECT customer_id, amount FROM orders", "orders", "required column 'timestamp' is missing (columns: "
     "customer_id, amount); use --map timestamp=<column>"),
    ("SELECT * FROM orders WHERE false", "orders", "the query returned no rows"),
    ("SELECT 1", "missing", "no such database file"),
    ("   ", "orders", "the query is empty"),
])  # fmt: skip
def test_a_bad_query_is_one_message_with_exit_code_2(tmp_path, query, db, message):
    _duckdb_table(tmp_path / "orders.duckdb", "orders", pd.DataFrame({
        "customer_id": ["a"], "timestamp": ["2025-01-01"], "amount": [1.0]}))  # fmt: skip
    result = CliRunner().invoke(cli, ["clean", "--sql", query, "--db", str(tmp_path / f"{db}.duckdb"),
                                      "--out", str(tmp_path / "out.csv")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("\n") <= 2


def test_the_options_refuse_ambiguous_or_missing_sources(tmp_path):
    runner = CliRunner()
    both = runner.invoke(cli, ["clean", "--data", "x.csv", "--sql", "SELECT 1", "--out", "o.csv"])
    assert both.exit_code == 2 and "either --data FILE or --sql QUERY" in both.output
    neither = runner.invoke(cli, ["clean", "--out", "o.csv"])
    assert neither.exit_code == 2 and "--data FILE or --sql QUERY" in neither.output
    db_alone = runner.invoke(cli, ["clean", "--db", "x.duckdb", "--out", "o.csv"])
    assert db_alone.exit_code == 2 and "--db needs --sql" in db_alone.output
    for command in ("train", "score", "clean", "backtest", "replay"):
        assert "--sql QUERY" in runner.invoke(cli, [command, "--help"]).output, command


def test_a_password_is_never_shown_and_can_come_from_the_settings(monkeypatch):
    source = SqlSource("SELECT 1", normalise_url("postgresql://shop:s3cret-pw@127.0.0.1:1/sales"))
    assert source.url.startswith("postgresql+psycopg://")
    assert "s3cret-pw" not in source.label() and "s3cret-pw" not in str(source)
    with pytest.raises(DataFileError) as refused:
        read_query(source)
    assert "s3cret-pw" not in str(refused.value) and "127.0.0.1" in str(refused.value)

    monkeypatch.setenv("SEGSTREAM_DB_URL", "postgresql://shop@db.internal/sales")
    monkeypatch.setenv("SEGSTREAM_DB_PASSWORD", "from-the-secret-store")
    from_settings = history_source(None, "SELECT 1", None)
    assert from_settings.url == "postgresql+psycopg://shop@db.internal/sales"
    assert from_settings.password == "from-the-secret-store" and "from-the-secret" not in str(from_settings)


def test_database_urls_are_normalised():
    assert normalise_url("orders.duckdb") == "duckdb:///orders.duckdb"
    assert normalise_url("/data/orders.duckdb") == "duckdb:////data/orders.duckdb"
    assert SqlSource("q", normalise_url("/data/orders.duckdb")).duckdb_path() == "/data/orders.duckdb"
    assert SqlSource("q", normalise_url("orders.duckdb")).duckdb_path() == "orders.duckdb"
    assert normalise_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalise_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert normalise_url(None) is None
    with pytest.raises(DataFileError, match="not a database URL"):
        normalise_url("orders.csv")


def test_a_customer_table_from_a_query_trains_like_the_file(tmp_path, public_data):
    table = public_data("creditcard")
    runner = CliRunner()
    attrs = ["--attributes", "age,income,expenditure,share,months,active", "--k", "4"]
    by_file = runner.invoke(cli, ["train", "--customers", str(table), *attrs, "--out", str(tmp_path / "f")])
    assert by_file.exit_code == 0, by_file.output
    by_sql = runner.invoke(cli, ["train", "--customers-sql", f"SELECT * FROM '{table}'", *attrs,
                                 "--out", str(tmp_path / "q")])  # fmt: skip
    assert by_sql.exit_code == 0, by_sql.output
    a = pd.read_parquet(tmp_path / "f" / "customers.parquet").set_index("customer_id")["segment"]
    b = pd.read_parquet(tmp_path / "q" / "customers.parquet").set_index("customer_id")["segment"]
    assert a.sort_index().equals(b.sort_index())
    both = runner.invoke(cli, ["train", "--customers", str(table), "--customers-sql", "SELECT 1", *attrs,
                               "--out", str(tmp_path / "x")])  # fmt: skip
    assert both.exit_code == 2 and "either --customers FILE or --customers-sql QUERY" in both.output
