"""Forecast backtest: held-out scoring, metric layout, final forecasts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segstream.trainer.errors import TrainerError
from segstream.trainer.forecast_eval import ForecastEvalError, backtest, effective_horizon

WEEKLY = np.array([100.0, 80.0, 90.0, 110.0, 150.0, 260.0, 240.0])
MODELS = ("prophet", "random_forest", "seasonal_naive")


def long_daily(days: int = 126, seed: int = 0) -> pd.DataFrame:
    """A total made of two segments with weekly seasonality and mild trend."""
    idx = pd.date_range("2024-01-01", periods=days, freq="D")
    rng = np.random.default_rng(seed)
    seg0 = WEEKLY[idx.dayofweek] + 0.5 * np.arange(days) + rng.normal(0, 5, days)
    seg1 = 0.3 * WEEKLY[idx.dayofweek] + rng.normal(0, 3, days)
    frames = [
        pd.DataFrame({"date": idx, "series": "total", "sales": seg0 + seg1}),
        pd.DataFrame({"date": idx, "series": "segment:0", "sales": seg0}),
        pd.DataFrame({"date": idx, "series": "segment:1", "sales": seg1}),
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def evaluation():  # one backtest (6 Prophet fits) shared by the tests below
    return backtest(long_daily(), horizon=14, generated_at="2024-05-06T00:00:00Z")


def test_metric_layout_is_json_ready(evaluation) -> None:
    m = evaluation.metrics
    for model in MODELS:
        assert set(m[model]) == {"mae", "rmse", "coverage"}
        assert 0 <= m[model]["mae"] <= m[model]["rmse"]
    assert set(m["by_segment"]) == {"0", "1"}
    assert set(m["by_segment"]["1"]) == set(MODELS)
    assert m["horizon_days"] == 14 and m["best_model"] in MODELS
    json.dumps(m)  # manifest-ready: plain floats, ints and strings only


def test_backtest_frame_holds_last_h_days_with_every_model(evaluation) -> None:
    frame = evaluation.backtest_frame
    assert len(frame) == 3 * 14
    assert frame["date"].min() == pd.Timestamp("2024-04-22")
    assert frame["date"].max() == pd.Timestamp("2024-05-05")
    for model in MODELS:
        assert frame[model].notna().all()
        assert (frame[f"{model}_lower"] <= frame[model]).all()
        assert (frame[model] <= frame[f"{model}_upper"]).all()
    total = frame[frame["series"] == "total"]
    mae = float(np.mean(np.abs(total["actual"] - total["seasonal_naive"])))
    assert evaluation.metrics["seasonal_naive"]["mae"] == pytest.approx(mae)


def test_models_beat_seasonal_naive_on_trending_series(evaluation) -> None:
    # The naive forecast lags the trend by a week; both learned models should track it.
    m = evaluation.metrics
    assert m["prophet"]["mae"] < m["seasonal_naive"]["mae"]
    assert m["random_forest"]["mae"] < m["seasonal_naive"]["mae"]


def test_final_forecasts_refit_on_full_history(evaluation) -> None:
    fc = evaluation.forecasts
    assert len(fc) == 3 * 3 * 14
    assert fc["date"].min() == pd.Timestamp("2024-05-06")
    assert (fc["generated_at"] == pd.Timestamp("2024-05-06", tz="UTC")).all()


def test_metrics_table_lists_total_first(evaluation) -> None:
    table = evaluation.metrics_table()
    assert list(table.columns) == ["series", "model", "mae", "rmse", "coverage", "notes"]
    assert len(table) == 9 and (table["series"].iloc[:3] == "total").all()
    assert table.iloc[:3]["mae"].is_monotonic_increasing


def test_short_history_shrinks_horizon_and_tiny_history_errors() -> None:
    daily = long_daily(days=20)
    assert effective_horizon(daily, 28) == 10
    result = backtest(daily, horizon=28, models=("random_forest", "seasonal_naive"))
    assert result.horizon_days == 10
    assert "fallback" in result.notes[("total", "random_forest")]
    with pytest.raises(ForecastEvalError, match="at least 2 days"):
        backtest(long_daily(days=1), horizon=7)
    assert issubclass(ForecastEvalError, TrainerError)


def test_missing_total_series_is_named() -> None:
    daily = long_daily(days=30)
    with pytest.raises(ForecastEvalError, match="total"):
        backtest(daily[daily["series"] != "total"], horizon=7)
