"""The synthetic history generator: determinism, shape of the data, dirty rows."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import COLUMNS, generate_transactions, write_table


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return generate_transactions(1000, 365, seed=7)


@pytest.fixture(scope="module")
def clean_year(year: pd.DataFrame) -> pd.DataFrame:
    return clean_transactions(year, "gen")[0]


def test_same_seed_same_rows_and_bytes(tmp_path):
    a = generate_transactions(200, 90, seed=3)
    b = generate_transactions(200, 90, seed=3)
    pd.testing.assert_frame_equal(a, b)
    for ext in ("csv", "parquet"):
        write_table(a, tmp_path / f"a.{ext}")
        write_table(b, tmp_path / f"b.{ext}")
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


def test_other_seed_other_rows():
    a = generate_transactions(200, 90, seed=3)
    b = generate_transactions(200, 90, seed=4)
    assert not a.equals(b)


def test_columns_and_formats(year):
    assert tuple(year.columns) == COLUMNS
    good = year.dropna()
    assert good["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00").mean() > 0.99
    assert good["amount"].str.fullmatch(r"-?\d+\.\d\d").mean() > 0.99
    assert good["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert set(year["channel"]) == {"web", "store", "app"}
    assert set(year["currency"]) == {"EUR"}
    assert year["event_id"].str.fullmatch(r"E\d{10}").all()


def test_default_density_is_about_20_rows_per_customer_year():
    rows = len(generate_transactions(5000, 365, seed=0))
    assert 85_000 <= rows <= 115_000


def test_window_respects_end_and_days(clean_year):
    assert clean_year["timestamp"].min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert clean_year["timestamp"].max() < pd.Timestamp("2026-01-01", tz="UTC")
    other = clean_transactions(generate_transactions(50, 10, seed=1, end="2024-03-10"), "g")[0]
    assert other["timestamp"].min() >= pd.Timestamp("2024-03-01", tz="UTC")
    assert other["timestamp"].max() < pd.Timestamp("2024-03-11", tz="UTC")


def test_every_customer_buys_at_least_once(clean_year):
    assert clean_year["customer_id"].nunique() >= 990  # a few lose their only row to spoiling


def test_dirty_share_and_kinds():
    df = generate_transactions(1000, 365, seed=11, dirty_fraction=0.02)
    _, report = clean_transactions(df, "gen")
    assert 0.015 <= report.dropped_rows / report.input_rows <= 0.025
    for reason in ("missing_customer_id", "invalid_timestamp", "invalid_amount", "duplicate_event"):
        assert report.dropped[reason] > 0, reason
    dupes = df[df["event_id"].duplicated(keep=False)]
    assert len(dupes) == 2 * report.dropped["duplicate_event"]
    assert dupes.duplicated(keep=False).all()  # exact copies, not just the same id


def test_no_dirt_when_disabled():
    _, report = clean_transactions(generate_transactions(300, 120, seed=2, dirty_fraction=0.0), "gen")
    assert report.dropped_rows == 0


def test_returns_refer_to_an_earlier_bigger_purchase(clean_year):
    returns = clean_year[clean_year["amount"] < 0]
    assert 0.01 < len(returns) / len(clean_year) < 0.08
    by_customer = dict(tuple(clean_year[clean_year["amount"] > 0].groupby("customer_id")))
    matched = 0
    for _, ret in returns.iterrows():
        buys = by_customer.get(ret["customer_id"])
        if buys is None:
            continue  # the purchase was one of the spoiled rows
        earlier = buys[buys["timestamp"] < ret["timestamp"]]
        matched += bool((earlier["amount"] >= -ret["amount"] - 1e-9).any())
    assert matched >= 0.97 * len(returns)
    assert (returns["quantity"] < 0).all()


def test_weekly_seasonality(clean_year):
    per_weekday = clean_year["timestamp"].dt.dayofweek.value_counts()
    assert per_weekday[5] > 1.3 * per_weekday[1]  # Saturday vs Tuesday


def test_yearly_seasonality_and_trend():
    df = clean_transactions(generate_transactions(600, 730, seed=5), "gen")[0]
    month = df["timestamp"].dt.month
    year = df["timestamp"].dt.year
    assert (month == 12).sum() > 1.3 * (month == 6).sum()
    assert (year == 2025).sum() > (year == 2024).sum()


def test_spend_is_heavy_tailed(clean_year):
    spend = clean_year.groupby("customer_id")["amount"].sum().sort_values(ascending=False)
    top_fifth = spend.iloc[: len(spend) // 5].sum()
    assert top_fifth > 0.5 * spend.sum()
    assert spend.mean() > 1.3 * spend.median()


def test_churners_and_new_customers_exist(clean_year):
    g = clean_year.groupby("customer_id")["timestamp"]
    end = pd.Timestamp("2026-01-01", tz="UTC")
    churned = ((end - g.max()) > pd.Timedelta(days=150)) & (g.size() >= 3)
    new = (end - g.min()) < pd.Timedelta(days=60)
    assert churned.mean() > 0.05
    assert new.mean() > 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        generate_transactions(0, 10, seed=1)
    with pytest.raises(ValueError, match="dirty_fraction"):
        generate_transactions(10, 10, seed=1, dirty_fraction=0.9)


def test_end_accepts_date_and_string():
    a = generate_transactions(20, 5, seed=1, end=dt.date(2024, 1, 31))
    b = generate_transactions(20, 5, seed=1, end="2024-01-31")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_a_million_rows_in_under_a_minute():
    started = time.perf_counter()
    df = generate_transactions(50_000, 365, seed=0)
    elapsed = time.perf_counter() - started
    assert len(df) > 900_000
    assert elapsed < 60, elapsed
    assert np.isfinite(pd.to_numeric(df["amount"], errors="coerce")).mean() > 0.99
