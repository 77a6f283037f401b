"""Prophet forecaster: forecasts and bands are clipped at 0 unless the history itself went negative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segstream.models.forecast_prophet import fit_prophet, prophet_forecast

WEEKLY = np.array([1.0, 0.9, 0.9, 1.0, 1.2, 1.4, 1.1])  # Monday..Sunday


def decaying_series(days: int = 70) -> pd.Series:
    """Sales falling ~14 a day from 1000 (a closed cohort winding down), never negative."""
    idx = pd.date_range("2024-01-01", periods=days, freq="D")
    rng = np.random.default_rng(0)
    values = (1000.0 - 14.0 * np.arange(days)) * WEEKLY[idx.day_of_week] + rng.normal(0, 10, days)
    return pd.Series(np.clip(values, 0.0, None), index=idx)


def _bands_ok(frame: pd.DataFrame) -> bool:
    return bool(((frame["lower"] <= frame["yhat"]) & (frame["yhat"] <= frame["upper"])).all())


@pytest.fixture(scope="module")
def decaying() -> pd.Series:
    return decaying_series()


def test_raw_prophet_goes_negative_on_a_decaying_series(decaying: pd.Series) -> None:
    # Guards the premise of the next test: without clipping the extrapolated trend is below 0.
    model, _ = fit_prophet(decaying)
    future = pd.DataFrame({"ds": pd.date_range(decaying.index[-1] + pd.Timedelta(days=1), periods=28)})
    assert model.predict(future)["yhat"].min() < 0


def test_forecast_and_bands_are_clipped_at_zero_and_notes_say_so(decaying: pd.Series) -> None:
    fc = prophet_forecast(decaying, 28)
    assert len(fc) == 28 and _bands_ok(fc)
    assert (fc[["yhat", "lower", "upper"]] >= 0).all().all()
    assert (fc["yhat"] == 0).any()
    notes = fc["notes"].iloc[0]
    assert "yearly seasonality off" in notes
    assert "forecast clipped at 0 on" in notes and "of 28 days" in notes


def test_history_with_a_negative_day_is_not_clipped(decaying: pd.Series) -> None:
    history = decaying.copy()
    history.iloc[-3] = -50.0  # returns exceeded sales that day: net sales can really be negative
    fc = prophet_forecast(history, 28)
    assert _bands_ok(fc)
    assert fc["yhat"].min() < 0
    assert "clipped" not in fc["notes"].iloc[0]


def test_growing_series_is_unchanged_and_lower_band_never_negative() -> None:
    idx = pd.date_range("2024-01-01", periods=42, freq="D")
    rng = np.random.default_rng(1)
    values = 20.0 * WEEKLY[idx.day_of_week] + 0.2 * np.arange(42) + rng.normal(0, 8, 42)
    history = pd.Series(np.clip(values, 0.0, None), index=idx)
    fc = prophet_forecast(history, 14)
    assert _bands_ok(fc)
    assert (fc["lower"] >= 0).all() and (fc["yhat"] > 0).all()
    assert fc["notes"].iloc[0] == "yearly seasonality off: 42 days of history < 365"
