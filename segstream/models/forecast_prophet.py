"""Prophet forecaster: piecewise-linear trend + weekly seasonality (+ yearly with enough history).

Forecasts and bands are clipped at 0 when the history never went negative (sales cannot be negative;
Prophet's linear trend, extrapolated from a decaying series, happily goes below 0). A history with a
negative day (returns exceeding sales) is left unclipped, as net sales can then really be negative.

Prophet and cmdstanpy log every fit at INFO; :func:`quiet_prophet_logging` raises their loggers to WARNING
so a forecast refresh does not flood the worker's log. Prophet is imported lazily because importing it
costs ~1 s and only the forecasting stage needs it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from segstream.models.forecast_core import (
    as_daily_series,
    check_horizon,
    forecast_frame,
    future_dates,
    interval_quantiles,
    seasonal_naive_forecast,
)

MIN_PROPHET_DAYS = 14  # two full weekly cycles; below that the weekly terms are not identifiable
YEARLY_MIN_DAYS = 365  # add yearly seasonality only with at least a year of history
YEARLY_FULL_ORDER_DAYS = 548  # ~1.5 years: from here Prophet's default Fourier order 10, below it order 5
UNCERTAINTY_SAMPLES = 300  # Prophet's default is 1000; 300 gives stable 10/90% bands at a third of the cost
_SEED = 20240601


def quiet_prophet_logging() -> None:
    """Set the ``prophet`` and ``cmdstanpy`` loggers to WARNING (they log each fit at INFO)."""
    from cmdstanpy.utils import get_logger

    # cmdstanpy configures its logger (level DEBUG plus a handler) lazily on first use; trigger that now so
    # our level is not overwritten by the first fit.
    get_logger()
    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fit_prophet(history: pd.Series, interval_width: float = 0.8) -> tuple[Any, str]:
    """Fit Prophet on a daily history.

    Weekly seasonality is always on. Yearly seasonality is added when the history spans at least
    ``YEARLY_MIN_DAYS`` days: with Fourier order 10 (Prophet's own default) from ~1.5 years on, order 5
    below that, where a full order-10 yearly curve would overfit the single cycle seen. (On a synthetic
    2-year series with a December peak, backtested on 702 days, order 10 beat order 5 by ~9% MAE.)
    It is added explicitly (``add_seasonality``) because Prophet's automatic yearly term logs a warning
    below two years.

    Args:
        history: Daily values (see :func:`segstream.models.forecast_core.as_daily_series`), >= 14 days.
        interval_width: Central coverage of Prophet's uncertainty interval.

    Returns:
        ``(fitted model, notes)`` where notes says whether yearly seasonality was used.

    Raises:
        ForecastError: If interval_width is outside (0, 1).
    """
    interval_quantiles(interval_width)  # validates
    from prophet import Prophet

    quiet_prophet_logging()  # after the import: importing prophet resets its logger to INFO

    history = as_daily_series(history)
    days = len(history)
    model = Prophet(
        weekly_seasonality=True,
        yearly_seasonality=False,
        daily_seasonality=False,
        interval_width=interval_width,
        uncertainty_samples=UNCERTAINTY_SAMPLES,
    )
    if days >= YEARLY_MIN_DAYS:
        order = 10 if days >= YEARLY_FULL_ORDER_DAYS else 5
        model.add_seasonality(name="yearly", period=365.25, fourier_order=order)
        notes = f"yearly seasonality on (order {order}, {days} days of history)"
    else:
        notes = f"yearly seasonality off: {days} days of history < {YEARLY_MIN_DAYS}"
    frame = pd.DataFrame({"ds": history.index, "y": history.to_numpy()})
    model.fit(frame)
    return model, notes


def prophet_forecast(history: pd.Series, horizon: int, interval_width: float = 0.8) -> pd.DataFrame:
    """Forecast ``horizon`` days with Prophet; intervals are Prophet's (trend and noise simulation).

    If no day of the history is negative, ``yhat``, ``lower`` and ``upper`` are clipped at 0; when that
    changes a point forecast, ``notes`` says on how many days. With a negative day in the history nothing
    is clipped. (Rolling-origin backtests on CDNOW, Superstore and generated data: clipping never raised
    the MAE and cut CDNOW's median 90-day MAE by 14-20%, where the trend plus a yearly term fitted to the
    cohort's first-year peak went negative. Seasonality mode, changepoint prior, yearly and weekly order,
    a log transform and holidays were searched there too; no setting beat these defaults on every series.)

    With fewer than ``MIN_PROPHET_DAYS`` days, or a constant series (nothing to fit), this returns the
    seasonal-naive forecast labelled ``prophet`` and says so in ``notes``.

    Args:
        history: Daily values.
        horizon: Days to forecast, >= 1.
        interval_width: Central coverage of the band.

    Returns:
        Forecast frame (date, yhat, lower, upper, model="prophet", notes).
    """
    check_horizon(horizon)
    history = as_daily_series(history)
    fallback = _fallback_reason(history)
    if fallback:
        frame = seasonal_naive_forecast(history, horizon, interval_width, model="prophet")
        frame["notes"] = _join(f"fallback to seasonal naive: {fallback}", frame["notes"].iloc[0])
        return frame
    model, notes = fit_prophet(history, interval_width)
    dates = future_dates(history, horizon)
    # Prophet draws its interval samples from numpy's global RNG; seed it for reproducible bands and put
    # the caller's RNG state back afterwards.
    state = np.random.get_state()
    try:
        np.random.seed(_SEED)
        predicted = model.predict(pd.DataFrame({"ds": dates}))
    finally:
        np.random.set_state(state)
    yhat = predicted["yhat"].to_numpy()
    lower = predicted["yhat_lower"].to_numpy()
    upper = predicted["yhat_upper"].to_numpy()
    if float(history.min()) >= 0.0:
        clipped = int(np.sum(yhat < 0.0))
        yhat, lower, upper = (np.clip(a, 0.0, None) for a in (yhat, lower, upper))
        if clipped:
            notes = _join(notes, f"forecast clipped at 0 on {clipped} of {horizon} days (history never negative)")
    return forecast_frame(dates, yhat, lower, upper, "prophet", notes)


def _fallback_reason(history: pd.Series) -> str:
    if len(history) < MIN_PROPHET_DAYS:
        return f"{len(history)} days of history < {MIN_PROPHET_DAYS} needed for prophet"
    if float(history.max()) == float(history.min()):
        return "constant history"
    return ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
