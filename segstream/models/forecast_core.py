"""Shared pieces of the sales-forecasting core: series preparation, interval helpers, baselines.

Every forecaster in :mod:`segstream.models.forecasting` takes a *history*: a float ``pd.Series`` indexed by
a daily, tz-naive ``DatetimeIndex`` whose dates are UTC calendar days. It returns a *forecast frame* with
columns ``date, yhat, lower, upper, model, notes`` (one row per future day, ``lower <= yhat <= upper``).
``notes`` is an empty string unless the model had to fall back or change its configuration, in which case
it says what happened and why, so a consumer never has to guess what produced a number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segstream.models.errors import SegstreamError

FORECAST_COLUMNS = ["date", "yhat", "lower", "upper", "model", "notes"]
SEASON = 7  # days: the weekly cycle dominates retail sales


class ForecastError(SegstreamError):
    """Forecasting input is unusable (wrong columns, non-positive horizon, ...)."""


def as_daily_series(history: pd.Series, name: str = "history") -> pd.Series:
    """Normalise a history to a complete, sorted, float daily series.

    Duplicated dates are summed and missing days become 0 (a day without events sold nothing), so the
    weekly lag ``t - 7`` is always exactly one week back.

    Args:
        history: Values indexed by dates (anything ``pd.to_datetime`` accepts; tz-aware is converted to UTC).
        name: Used in error messages.

    Returns:
        A float series on a gap-free daily ``DatetimeIndex`` (tz-naive, normalised to midnight).

    Raises:
        ForecastError: If the index cannot be read as dates or values are not numeric.
    """
    if len(history) == 0:
        return pd.Series([], index=pd.DatetimeIndex([], dtype="datetime64[ns]"), dtype=float)
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(history.index))
    except (TypeError, ValueError) as exc:
        raise ForecastError(f"{name}: index must hold dates ({exc})") from exc
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    values = pd.to_numeric(pd.Series(np.asarray(history), index=idx.normalize()), errors="coerce")
    if values.isna().any():
        bad = values.index[values.isna()][0].date()
        raise ForecastError(f"{name}: value for {bad} is missing or not numeric")
    series = values.groupby(level=0).sum().astype(float)
    full = pd.date_range(series.index.min(), series.index.max(), freq="D")
    series = series.reindex(full, fill_value=0.0)
    series.index = series.index.astype("datetime64[ns]")
    return series


def future_dates(history: pd.Series, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` days following the history's last day."""
    check_horizon(horizon)
    start = history.index.max() + pd.Timedelta(days=1)
    return pd.date_range(start, periods=horizon, freq="D").astype("datetime64[ns]")


def check_horizon(horizon: int) -> None:
    """Raise :class:`ForecastError` unless ``horizon`` is a positive integer."""
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ForecastError(f"forecast horizon must be a positive number of days, got {horizon!r}")


def interval_quantiles(interval_width: float) -> tuple[float, float]:
    """Lower and upper quantile levels of a central interval, e.g. 0.8 -> (0.1, 0.9)."""
    if not 0.0 < interval_width < 1.0:
        raise ForecastError(f"interval_width must be between 0 and 1, got {interval_width!r}")
    return (1.0 - interval_width) / 2.0, (1.0 + interval_width) / 2.0


def forecast_frame(
    dates: pd.DatetimeIndex,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    model: str,
    notes: str = "",
) -> pd.DataFrame:
    """Assemble a forecast frame, forcing ``lower <= yhat <= upper`` (bands never exclude the point)."""
    yhat = np.asarray(yhat, dtype=float)
    return pd.DataFrame(
        {
            "date": dates,
            "yhat": yhat,
            "lower": np.minimum(np.asarray(lower, dtype=float), yhat),
            "upper": np.maximum(np.asarray(upper, dtype=float), yhat),
            "model": model,
            "notes": notes,
        }
    )


def residual_band(residuals: np.ndarray, interval_width: float) -> tuple[float, float]:
    """Empirical quantiles of residuals, widened to include 0 so the band always contains the point."""
    residuals = residuals[np.isfinite(residuals)]
    if residuals.size == 0:
        return 0.0, 0.0
    q_lo, q_hi = interval_quantiles(interval_width)
    lo, hi = np.quantile(residuals, [q_lo, q_hi])
    return min(float(lo), 0.0), max(float(hi), 0.0)


def mean_forecast(
    history: pd.Series, horizon: int, interval_width: float = 0.8, model: str = "mean", notes: str = ""
) -> pd.DataFrame:
    """Flat forecast at the history's mean; the last resort when there is not even a week of data.

    The band comes from the spread of the history around its mean (zero-width for 0 or 1 points).
    """
    history = as_daily_series(history)
    dates = _future_or_today(history, horizon)
    if len(history) == 0:
        zeros = np.zeros(horizon)
        return forecast_frame(dates, zeros, zeros, zeros, model, notes)
    level = float(history.mean())
    lo, hi = residual_band(history.to_numpy() - level, interval_width)
    yhat = np.full(horizon, level)
    return forecast_frame(dates, yhat, yhat + lo, yhat + hi, model, notes)


def seasonal_naive_forecast(
    history: pd.Series, horizon: int, interval_width: float = 0.8, model: str = "seasonal_naive"
) -> pd.DataFrame:
    """Same weekday last week: ``yhat[T+h] = y[T+h-7k]`` for the smallest ``k`` that lands in the history.

    Intervals: empirical quantiles of the weekly-lag residuals ``y[t] - y[t-7]`` over the history, scaled
    by ``sqrt(k)`` where ``k`` is how many weeks ahead the day is (errors of a random walk over weeks add
    up). With less than two weeks there are no residuals to learn from and the band is that of
    :func:`mean_forecast`; with less than one week the forecast *is* the mean (said in ``notes``).

    Args:
        history: Daily values (see :func:`as_daily_series`).
        horizon: Number of days to forecast, >= 1.
        interval_width: Central coverage of the band, e.g. 0.8 for the 10th-90th percentile.
        model: Label written to the ``model`` column (fallback callers pass their own name).

    Returns:
        The forecast frame.
    """
    check_horizon(horizon)
    history = as_daily_series(history)
    if len(history) < SEASON:
        note = f"fallback to mean: {len(history)} days of history < {SEASON} needed for seasonal naive"
        return mean_forecast(history, horizon, interval_width, model=model, notes=note)
    values = history.to_numpy()
    last_week = values[-SEASON:]
    steps = np.arange(horizon)
    yhat = last_week[steps % SEASON]
    weeks_ahead = steps // SEASON + 1
    residuals = values[SEASON:] - values[:-SEASON]
    if residuals.size >= SEASON:
        lo, hi = residual_band(residuals, interval_width)
    else:
        lo, hi = residual_band(values - values.mean(), interval_width)
    scale = np.sqrt(weeks_ahead)
    return forecast_frame(future_dates(history, horizon), yhat, yhat + lo * scale, yhat + hi * scale, model)


def _future_or_today(history: pd.Series, horizon: int) -> pd.DatetimeIndex:
    check_horizon(horizon)
    if len(history) == 0:
        # No history at all: forecast from tomorrow (UTC) so the rows still carry real dates.
        start = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.Timedelta(days=1)
        return pd.date_range(start, periods=horizon, freq="D").astype("datetime64[ns]")
    return future_dates(history, horizon)
