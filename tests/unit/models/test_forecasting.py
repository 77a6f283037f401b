"""Forecasting core: daily series construction, the three forecasters and their fallbacks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.models.errors import SegstreamError
from segstream.models.forecasting import (
    OUTPUT_COLUMNS,
    ForecastError,
    daily_sales,
    forecast_all,
    mean_forecast,
    prophet_forecast,
    random_forest_forecast,
    seasonal_naive_forecast,
    series_history,
)

WEEKLY = np.array([100.0, 80.0, 90.0, 110.0, 150.0, 260.0, 240.0])


def seasonal_series(days: int = 140, trend: float = 1.0, noise: float = 5.0, seed: int = 0) -> pd.Series:
    """Strong weekly pattern + linear trend + small noise, starting on a Monday."""
    idx = pd.date_range("2024-01-01", periods=days, freq="D")
    rng = np.random.default_rng(seed)
    values = WEEKLY[idx.dayofweek] + trend * np.arange(days) + rng.normal(0, noise, days)
    return pd.Series(values, index=idx)


def _mae(forecast: pd.DataFrame, actual: pd.Series) -> float:
    return float(np.mean(np.abs(forecast["yhat"].to_numpy() - actual.to_numpy())))


def _bands_ok(frame: pd.DataFrame) -> bool:
    return bool(((frame["lower"] <= frame["yhat"]) & (frame["yhat"] <= frame["upper"])).all())


def events(rows: list[tuple[str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([r[0] for r in rows], utc=True),
            "amount": [r[1] for r in rows],
            "segment": [r[2] for r in rows],
        }
    )


# --- daily_sales -----------------------------------------------------------------------------------------


def test_daily_sales_fills_gaps_with_zero_and_nets_returns() -> None:
    ev = events(
        [
            ("2024-03-01T10:00:00Z", 50.0, 0),
            ("2024-03-01T23:59:59+00:00", -20.0, 1),  # return
            ("2024-03-04T00:00:01Z", 30.0, 1),
            ("2024-03-03T23:30:00-02:00", 5.0, 0),  # 01:30 UTC on the 4th
        ]
    )
    daily = daily_sales(ev)
    assert list(daily.columns) == ["date", "series", "sales"]
    assert daily["series"].unique().tolist() == ["total"]
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    assert daily["date"].dt.strftime("%Y-%m-%d").tolist() == days
    assert daily["sales"].tolist() == [30.0, 0.0, 0.0, 35.0]


def test_segment_series_sum_to_total_every_day() -> None:
    ev = events(
        [
            ("2024-03-01T10:00:00Z", 50.0, 0),
            ("2024-03-01T11:00:00Z", -20.0, 1),
            ("2024-03-03T12:00:00Z", 30.0, 2),
        ]
    )
    daily = daily_sales(ev, segment_col="segment")
    assert sorted(daily["series"].unique()) == ["segment:0", "segment:1", "segment:2", "total"]
    assert daily.groupby("series").size().eq(3).all()  # every series spans the same 3 days
    wide = daily.pivot(index="date", columns="series", values="sales")
    segs = wide.drop(columns="total").sum(axis=1)
    np.testing.assert_allclose(segs.to_numpy(), wide["total"].to_numpy())


def test_daily_sales_names_missing_column() -> None:
    with pytest.raises(ForecastError, match="segment"):
        daily_sales(events([("2024-03-01T10:00:00Z", 1.0, 0)]), segment_col="segment_id")
    assert issubclass(ForecastError, SegstreamError)


def test_daily_sales_empty() -> None:
    empty = daily_sales(pd.DataFrame({"timestamp": pd.to_datetime([], utc=True), "amount": []}))
    assert empty.empty and list(empty.columns) == ["date", "series", "sales"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=60 * 86_400),  # seconds into a 60-day window
            st.floats(min_value=-500, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
            st.integers(min_value=0, max_value=3),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_daily_sales_preserves_the_total(rows: list[tuple[int, float, int]]) -> None:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    ev = pd.DataFrame(
        {
            "timestamp": [start + pd.Timedelta(seconds=s) for s, _, _ in rows],
            "amount": [a for _, a, _ in rows],
            "segment": [g for _, _, g in rows],
        }
    )
    daily = daily_sales(ev, segment_col="segment")
    total = daily.loc[daily["series"] == "total", "sales"]
    assert total.sum() == pytest.approx(sum(a for _, a, _ in rows), abs=1e-6)
    span = (ev["timestamp"].max().normalize() - ev["timestamp"].min().normalize()).days + 1
    assert len(total) == span  # gap-free
    assert daily.loc[daily["series"] != "total", "sales"].sum() == pytest.approx(total.sum(), abs=1e-6)


# --- forecasters -----------------------------------------------------------------------------------------


def test_seasonal_naive_repeats_last_week_exactly() -> None:
    history = seasonal_series(35)
    fc = seasonal_naive_forecast(history, 10)
    expected = np.concatenate([history.to_numpy()[-7:], history.to_numpy()[-7:-4]])
    np.testing.assert_array_equal(fc["yhat"].to_numpy(), expected)
    assert (fc["date"].dt.dayofweek.to_numpy() == (history.index[-7:].dayofweek.tolist() * 2)[:10]).all()
    assert fc["date"].iloc[0] == history.index[-1] + pd.Timedelta(days=1)
    assert _bands_ok(fc)
    width = (fc["upper"] - fc["lower"]).to_numpy()
    assert width[7] > width[0]  # the second week ahead is less certain


def test_ml_models_beat_a_flat_mean_on_a_seasonal_series() -> None:
    full = seasonal_series(182, trend=0.5)
    history, actual = full.iloc[:-28], full.iloc[-28:]
    flat = _mae(mean_forecast(history, 28), actual)
    for fc in (prophet_forecast(history, 28), random_forest_forecast(history, 28)):
        assert _bands_ok(fc)
        assert fc["notes"].iloc[0] == "" or "yearly seasonality off" in fc["notes"].iloc[0]
        assert _mae(fc, actual) < 0.5 * flat, fc["model"].iloc[0]


def test_prophet_logging_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    prophet_forecast(seasonal_series(30), 3)
    with caplog.at_level(logging.INFO):
        prophet_forecast(seasonal_series(30), 3)
    assert not [r for r in caplog.records if r.name.startswith(("cmdstanpy", "prophet")) and r.levelno < 30]


@pytest.mark.parametrize("days", [0, 1, 5, 10, 20])
def test_short_histories_fall_back_and_say_so(days: int) -> None:
    history = seasonal_series(days) if days else pd.Series([], dtype=float)
    daily = pd.DataFrame({"date": history.index, "series": "total", "sales": history.to_numpy()})
    if days == 0:
        daily = pd.DataFrame({"date": [pd.Timestamp("2024-01-01")], "series": ["total"], "sales": [0.0]})
    out = forecast_all(daily, 7, models=("random_forest", "seasonal_naive"))
    assert list(out.columns) == OUTPUT_COLUMNS
    assert len(out) == 14 and _bands_ok(out) and out["yhat"].notna().all()
    assert out.loc[out["model"] == "random_forest", "notes"].str.contains("fallback").all()
    for fc in (mean_forecast(history, 3), seasonal_naive_forecast(history, 3)):
        assert len(fc) == 3 and _bands_ok(fc)


def test_all_zero_and_gappy_series_do_not_crash() -> None:
    dates = pd.date_range("2024-01-01", periods=90, freq="D")
    zeros = pd.DataFrame({"date": dates, "series": "segment:1", "sales": 0.0})
    gappy = seasonal_series(90).iloc[::3]  # two of every three days missing
    gappy_daily = pd.DataFrame({"date": gappy.index, "series": "total", "sales": gappy.to_numpy()})
    out = forecast_all(pd.concat([zeros, gappy_daily]), 5, generated_at="2024-04-01T00:00:00Z")
    assert len(out) == 2 * 3 * 5 and _bands_ok(out)
    zero_rows = out[out["series"] == "segment:1"]
    assert (zero_rows["yhat"] == 0).all()
    assert (out["generated_at"] == pd.Timestamp("2024-04-01", tz="UTC")).all()
    assert series_history(gappy_daily, "total").index.size == 88  # gaps re-filled, not dropped


def test_forecast_all_rejects_bad_arguments() -> None:
    daily = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3), "series": "total", "sales": 1.0})
    with pytest.raises(ForecastError, match="unknown forecast model"):
        forecast_all(daily, 3, models=("arima",))
    with pytest.raises(ForecastError, match="horizon"):
        forecast_all(daily, 0)
    with pytest.raises(ForecastError, match="sales"):
        forecast_all(daily.drop(columns="sales"), 3)
