"""``segstream generate`` / ``segstream clean`` and the shared data options, through click's CliRunner."""

from __future__ import annotations

import re

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.data import data_options, load_and_clean, parse_mapping
from segstream.cli.main import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str):
    return runner.invoke(cli, [str(a) for a in args])


def test_generate_writes_and_reports_row_count(runner, tmp_path):
    out = tmp_path / "g.csv"
    result = run(runner, "generate", "--customers", 100, "--days", 60, "--seed", 1, "--out", out)
    assert result.exit_code == 0, result.output
    rows = len(pd.read_csv(out))
    assert f"wrote {rows:,} rows" in result.output
    again = tmp_path / "g2.csv"
    run(runner, "generate", "--customers", 100, "--days", 60, "--seed", 1, "--out", again)
    assert out.read_bytes() == again.read_bytes()


def test_generate_parquet_and_end(runner, tmp_path):
    out = tmp_path / "g.parquet"
    result = run(runner, "generate", "--customers", 20, "--days", 5, "--end", "2024-02-29",
                 "--dirty-fraction", 0, "--out", out)
    assert result.exit_code == 0, result.output
    stamps = pd.read_parquet(out)["timestamp"]
    assert stamps.min() >= "2024-02-25" and stamps.max() < "2024-03-01"


@pytest.mark.parametrize("args", [
    ("--end", "tomorrow"), ("--customers", "0"), ("--dirty-fraction", "0.9"),
])
def test_generate_bad_options(runner, tmp_path, args):
    result = run(runner, "generate", *args, "--out", tmp_path / "g.csv")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_generate_unknown_output_format(runner, tmp_path):
    result = run(runner, "generate", "--customers", 5, "--days", 3, "--out", tmp_path / "g.xlsx")
    assert result.exit_code == 2
    assert "g.xlsx: unknown format '.xlsx'" in result.output


def test_clean_prints_report_and_writes(runner, tmp_path):
    src, out = tmp_path / "g.csv", tmp_path / "c.parquet"
    run(runner, "generate", "--customers", 100, "--days", 60, "--seed", 2, "--dirty-fraction", 0.05,
        "--out", src)
    result = run(runner, "clean", "--data", src, "--out", out)
    assert result.exit_code == 0, result.output
    assert "dropped: duplicate event" in result.output and "kept rows" in result.output
    df = pd.read_parquet(out)
    assert str(df["timestamp"].dtype).startswith("datetime64") and df["event_id"].is_unique
    assert f"wrote {len(df):,} rows" in result.output


def test_clean_with_map_and_preset(runner, tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("id,kunde,zeit,betrag\n1,K1,2025-01-01T10:00:00+01:00,9.99\n2,K2,1735725600000,-1\n")
    out = tmp_path / "c.csv"
    result = run(runner, "clean", "--data", src, "--map", "event_id=id", "--map", "customer_id=kunde",
                 "--map", "timestamp=zeit", "--map", "amount=betrag", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1:] == ["1,K1,2025-01-01T09:00:00+00:00,9.99",
                                                "2,K2,2025-01-01T10:00:00+00:00,-1.0"]
    retail = tmp_path / "r.csv"
    retail.write_text("InvoiceNo,Quantity,InvoiceDate,UnitPrice,CustomerID\nC1,-2,12/1/2010 8:26,1.5,7\n"
                      "2,1,12/1/2010 9:00,2,7\n")
    result = run(runner, "clean", "--data", retail, "--preset", "online-retail", "--out", out)
    assert result.exit_code == 0, result.output
    assert re.search(r"of which returns +1\n", result.output)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("missing.csv", None, "missing.csv: no such file"),
    ("empty.csv", "", "empty.csv: the file is empty"),
    ("data.txt", "a,b\n", "data.txt: unknown format '.txt'"),
    ("corrupt.parquet", "PAR1 garbage", "corrupt.parquet: not a readable Parquet file"),
    ("nocol.csv", "event_id,customer_id,timestamp\n1,C,2025-01-01\n", "required column 'amount' is missing"),
    ("types.csv", "event_id,customer_id,timestamp,amount\n1,C,2025-01-01,1\n2,C,2025-01-01,abc\n"
                  "3,C,2025-01-02,x\n", None),
    ("allbad.csv", "event_id,customer_id,timestamp,amount\n1,C,2025-01-01,n/a\n2,C,2025-01-01,abc\n",
     "column 'amount': no value could be parsed as a number (first bad value 'n/a' at row 1)"),
])
def test_bad_files_exit_2_with_a_message(runner, tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = run(runner, "clean", "--data", path, "--out", tmp_path / "o.csv")
    assert "Traceback" not in result.output
    if expected is None:  # some bad values: not an error, they are counted
        assert result.exit_code == 0, result.output
        assert "first at row 2: 'abc'" in result.output
        return
    assert result.exit_code == 2, result.output
    assert f"error: file {path}" in result.output
    assert expected in result.output


def test_bad_map_option(runner, tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("a\n1\n")
    result = run(runner, "clean", "--data", src, "--map", "amount", "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "canonical=source" in result.output
    result = run(runner, "clean", "--data", src, "--preset", "sap", "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_parse_mapping():
    assert parse_mapping(("amount = Betrag", "customer_id=Kunde ID")) == {"amount": "Betrag",
                                                                          "customer_id": "Kunde ID"}
    assert parse_mapping(None) == {}
    with pytest.raises(click.BadParameter, match="mapped twice"):
        parse_mapping(("amount=a", "amount=b"))


def test_data_options_and_load_and_clean_are_reusable(runner, tmp_path):
    @click.command()
    @data_options
    def train(data, map, preset):
        df, report = load_and_clean(data, map, preset, echo=False)
        click.echo(f"{len(df)} {report.kept_rows} {list(df.columns)[:4]}")

    src = tmp_path / "m.csv"
    src.write_text("id,c,t,a\n1,K,1735725600000,2\n")
    result = runner.invoke(train, ["--data", str(src), "--map", "event_id=id", "--map", "customer_id=c",
                                   "--map", "timestamp=t", "--map", "amount=a"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 1 ['event_id', 'customer_id', 'timestamp', 'amount']"
    assert "--preset [online-retail]" in runner.invoke(train, ["--help"]).output


def test_clean_drops_rows_timed_past_the_workers_future_limit(runner, tmp_path, monkeypatch):
    src = tmp_path / "f.csv"
    src.write_text("event_id,customer_id,timestamp,amount\n"
                   "e1,C1,2025-01-01T00:00:00Z,5\ne2,C1,2099-01-01T00:00:00Z,7\n")  # fmt: skip
    result = run(runner, "clean", "--data", src, "--out", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    assert re.search(r"dropped: timestamp in the future\s+1\s+\[timestamp_in_future\]\s+"
                     r"first at row 2: '2099-01-01T00:00:00Z'", result.output)
    assert list(pd.read_csv(tmp_path / "o.csv")["event_id"]) == ["e1"]
    monkeypatch.setenv("SEGSTREAM_WORKER_MAX_FUTURE_SKEW_S", "0")  # the same setting turns it off for files
    result = run(runner, "clean", "--data", src, "--out", tmp_path / "o2.csv")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "o2.csv")["event_id"]) == ["e1", "e2"]


def test_a_refused_setting_is_an_error_line_not_a_traceback(runner, tmp_path, monkeypatch):
    src = tmp_path / "f.csv"
    src.write_text("event_id,customer_id,timestamp,amount\ne1,C1,2025-01-01T00:00:00Z,5\n")
    monkeypatch.setenv("SEGSTREAM_WORKER_BATCH_SIZE", "0")  # cleaning reads the worker's future-skew setting
    result = run(runner, "clean", "--data", src, "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "invalid setting: SEGSTREAM_WORKER_BATCH_SIZE: Input should be greater than or equal to 1" in result.output
