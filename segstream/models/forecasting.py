"""Sales forecasting core shared by the trainer and the streaming worker: daily series and forecasts.

Pure (pandas, numpy, scikit-learn, Prophet; no I/O). The trainer backtests these models
(:mod:`segstream.trainer.forecast_eval`); the stream refreshes forecasts with :func:`forecast_all` from the
bundle's stored daily history plus its own windowed daily sales.

Daily frames are *long*: columns ``date`` (tz-naive ``datetime64[ns]`` at midnight, meaning the UTC
calendar day), ``series`` (``"total"`` or ``"segment:<id>"``) and ``sales`` (net amount: returns, i.e.
negative amounts, are subtracted). Every series covers the same gap-free range of days, zero-filled, so
per-segment series add up to the total on every day.

Models (``MODELS``): ``prophet`` (trend + weekly [+ yearly] seasonality), ``random_forest`` (lag and
calendar features, recursive), ``seasonal_naive`` (same weekday last week, the baseline). Each returns
``lower <= yhat <= upper`` bands; see their modules for how the bands are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd

from segstream.models.forecast_core import (
    FORECAST_COLUMNS,
    ForecastError,
    as_daily_series,
    check_horizon,
    interval_quantiles,
    mean_forecast,
    seasonal_naive_forecast,
)
from segstream.models.forecast_prophet import fit_prophet, prophet_forecast, quiet_prophet_logging
from segstream.models.forecast_rf import fit_random_forest, random_forest_forecast

__all__ = [
    "DAILY_COLUMNS",
    "FORECAST_COLUMNS",
    "MODELS",
    "OUTPUT_COLUMNS",
    "TOTAL",
    "ForecastError",
    "daily_sales",
    "fit_prophet",
    "fit_random_forest",
    "forecast_all",
    "mean_forecast",
    "prophet_forecast",
    "quiet_prophet_logging",
    "random_forest_forecast",
    "seasonal_naive_forecast",
    "series_history",
    "segment_series_name",
]

TOTAL = "total"
DAILY_COLUMNS = ["date", "series", "sales"]
OUTPUT_COLUMNS = ["series", "date", "yhat", "lower", "upper", "model", "generated_at", "notes"]

Forecaster = Callable[[pd.Series, int, float], pd.DataFrame]
MODELS: dict[str, Forecaster] = {
    "prophet": prophet_forecast,
    "random_forest": random_forest_forecast,
    "seasonal_naive": seasonal_naive_forecast,
}


def segment_series_name(segment: object) -> str:
    """Series name of a segment id, e.g. ``3 -> "segment:3"``."""
    return f"segment:{int(segment)}"  # type: ignore[call-overload]


def daily_sales(events: pd.DataFrame, segment_col: str | None = None) -> pd.DataFrame:
    """Build complete daily net-sales series from clean events, total and optionally per segment.

    Args:
        events: Clean events with ``timestamp`` (datetime; tz-naive is taken as UTC, other zones are
            converted to UTC) and ``amount`` (float, negative for returns).
        segment_col: Optional column with integer segment ids; adds one ``segment:<id>`` series per id.
            Rows with a missing segment count in the total only.

    Returns:
        Long frame ``date, series, sales`` sorted by series then date, each series spanning every day from
        the first to the last event day (zero where nothing sold). Empty input gives an empty frame.

    Raises:
        ForecastError: If a required column is missing or amounts are not numeric.
    """
    required = ["timestamp", "amount"] + ([segment_col] if segment_col else [])
    missing = [c for c in required if c not in events.columns]
    if missing:
        raise ForecastError(f"events: missing column(s) {', '.join(missing)} needed for daily sales")
    if events.empty:
        return pd.DataFrame(
            {
                "date": pd.Series(dtype="datetime64[ns]"),
                "series": pd.Series(dtype=str),
                "sales": pd.Series(dtype=float),
            }
        )
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    day = stamps.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
    amount = pd.to_numeric(events["amount"], errors="coerce")
    if amount.isna().any():
        row = amount.index[amount.isna()][0]
        raise ForecastError(f"events: column amount at row {row} is missing or not numeric")
    full = pd.date_range(day.min(), day.max(), freq="D").astype("datetime64[ns]")
    frames = [_one_series(amount.groupby(day).sum(), full, TOTAL)]
    if segment_col:
        segments = events[segment_col]
        known = segments.notna()
        grouped = amount[known].groupby([segments[known].astype("int64"), day[known]]).sum()
        for seg in sorted(grouped.index.get_level_values(0).unique()):
            frames.append(_one_series(grouped.xs(seg, level=0), full, segment_series_name(seg)))
    return pd.concat(frames, ignore_index=True)[DAILY_COLUMNS]


def series_history(daily: pd.DataFrame, series: str) -> pd.Series:
    """One series of a long daily frame as a complete daily ``pd.Series`` (gaps filled with 0)."""
    _check_daily(daily)
    part = daily.loc[daily["series"] == series]
    return as_daily_series(pd.Series(part["sales"].to_numpy(), index=pd.to_datetime(part["date"])), series)


def forecast_all(
    daily: pd.DataFrame,
    horizon: int,
    models: Sequence[str] = ("prophet", "random_forest", "seasonal_naive"),
    generated_at: pd.Timestamp | str | None = None,
    interval_width: float = 0.8,
    series: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Forecast every series of a long daily frame with every requested model.

    Each (series, model) is fitted independently, so one odd series cannot disturb another. Short,
    all-zero or gappy series never raise: gaps are zero-filled and models fall back to simpler ones
    (prophet and random_forest to seasonal naive, seasonal naive to the mean) and say so in ``notes``;
    the ``model`` column always carries the requested model name.

    Args:
        daily: Long frame with ``date, series, sales`` (see :func:`daily_sales`).
        horizon: Days to forecast after each series' last day, >= 1.
        models: Names from ``MODELS``.
        generated_at: Stamp written to every row (UTC); defaults to now.
        interval_width: Central coverage of the bands (0.8 = 10th to 90th percentile).
        series: Restrict to these series names (default: all, in sorted order).

    Returns:
        Frame with ``OUTPUT_COLUMNS``: series, date, yhat, lower, upper, model, generated_at, notes.

    Raises:
        ForecastError: For an unknown model, a non-positive horizon, a bad interval width or missing columns.
    """
    check_horizon(horizon)
    interval_quantiles(interval_width)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ForecastError(f"unknown forecast model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    _check_daily(daily)
    stamp = pd.Timestamp.now(tz="UTC") if generated_at is None else pd.Timestamp(generated_at)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    names = sorted(daily["series"].unique()) if series is None else list(series)
    frames = []
    for name in names:
        history = series_history(daily, name)
        for model in models:
            frame = MODELS[model](history, horizon, interval_width)
            frame.insert(0, "series", name)
            frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OUTPUT_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    out["generated_at"] = stamp
    return out[OUTPUT_COLUMNS]


def _one_series(per_day: pd.Series, full: pd.DatetimeIndex, name: str) -> pd.DataFrame:
    per_day.index = pd.DatetimeIndex(per_day.index).astype("datetime64[ns]")
    sales = per_day.reindex(full, fill_value=0.0).astype(float)
    return pd.DataFrame({"date": full, "series": name, "sales": sales.to_numpy()})


def _check_daily(daily: pd.DataFrame) -> None:
    missing = [c for c in DAILY_COLUMNS if c not in daily.columns]
    if missing:
        raise ForecastError(f"daily sales frame: missing column(s) {', '.join(missing)}")
