"""Backtest of the sales forecasters: hold out the last H days, score each model, then refit on everything.

For every series of a long daily frame (see :func:`segstream.models.forecasting.daily_sales`) each model is
fitted on all but the last ``H`` days and scored on those ``H`` days with MAE, RMSE and the share of actual
days inside the forecast band (``coverage``, to check the nominal ``interval_width``). The final forecasts
are then refitted on the full history with :func:`segstream.models.forecasting.forecast_all`, the same call
the streaming worker makes.

Metric layout (what goes to the manifest under ``metrics.forecast``)::

    {"prophet": {"mae": .., "rmse": .., "coverage": ..},      # the total series
     "random_forest": {...}, "seasonal_naive": {...},
     "by_segment": {"3": {"prophet": {...}, ...}, ...},       # keyed by segment id
     "best_model": "prophet", "horizon_days": 28, "interval_width": 0.8}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from segstream.models.forecasting import TOTAL, forecast_all, series_history
from segstream.trainer.errors import TrainerError

DEFAULT_MODELS = ("prophet", "random_forest", "seasonal_naive")
SEGMENT_PREFIX = "segment:"


class ForecastEvalError(TrainerError):
    """The daily sales cannot be backtested (too short, or no total series)."""


@dataclass(frozen=True)
class ForecastEvaluation:
    """Result of :func:`backtest`.

    Attributes:
        metrics: JSON-ready nested dict (see the module docstring).
        backtest_frame: One row per (series, held-out day): ``date, series, actual`` and, per model,
            ``<model>, <model>_lower, <model>_upper`` -- for forecast-against-actuals plots.
        forecasts: Final forecasts refitted on the full history (``forecast_all`` output).
        horizon_days: Held-out days actually used (less than requested for a short history).
        notes: ``(series, model) -> notes`` of the backtest fits (fallbacks, yearly seasonality on/off).
    """

    metrics: dict[str, Any]
    backtest_frame: pd.DataFrame
    forecasts: pd.DataFrame
    horizon_days: int
    notes: dict[tuple[str, str], str] = field(default_factory=dict)

    def metrics_table(self) -> pd.DataFrame:
        """Scores as a tidy table: ``series, model, mae, rmse, coverage, notes``; total first, best first."""
        frame = self.backtest_frame
        models = [c for c in frame.columns if f"{c}_lower" in frame.columns]
        rows = []
        for series, group in frame.groupby("series", sort=False):
            for model in models:
                scores = _scores(
                    group["actual"], group[model], group[f"{model}_lower"], group[f"{model}_upper"]
                )
                rows.append(
                    {"series": series, "model": model, **scores, "notes": self.notes.get((series, model), "")}
                )
        table = pd.DataFrame(rows, columns=["series", "model", "mae", "rmse", "coverage", "notes"])
        not_total = table["series"].ne(TOTAL)
        return (
            table.assign(_o=not_total)
            .sort_values(["_o", "series", "mae"], kind="stable")
            .drop(columns="_o")
            .reset_index(drop=True)
        )


def align_series(daily: pd.DataFrame) -> pd.DataFrame:
    """Put every series on the same gap-free day range (zero-filled), so one cutoff splits them all alike."""
    dates = pd.to_datetime(daily["date"])
    if dates.empty:
        return daily[["date", "series", "sales"]]
    full = pd.date_range(dates.min(), dates.max(), freq="D").astype("datetime64[ns]")
    grid = pd.MultiIndex.from_product([sorted(daily["series"].unique()), full], names=["series", "date"])
    sales = daily.assign(date=dates.astype("datetime64[ns]")).groupby(["series", "date"])["sales"].sum()
    out = sales.reindex(grid, fill_value=0.0).reset_index()
    return out[["date", "series", "sales"]]


def effective_horizon(daily: pd.DataFrame, horizon: int) -> int:
    """Held-out days for a backtest: ``horizon``, or half the days available when that is fewer.

    Raises:
        ForecastEvalError: If there are fewer than 2 days (nothing to fit on and hold out).
    """
    if horizon < 1:
        raise ForecastEvalError(f"backtest horizon must be a positive number of days, got {horizon}")
    days = pd.to_datetime(daily["date"])
    n_days = 0 if days.empty else (days.max() - days.min()).days + 1
    if n_days < 2:
        raise ForecastEvalError(f"daily sales: backtest needs at least 2 days of history, got {n_days}")
    return int(min(horizon, n_days // 2))


def backtest(
    daily: pd.DataFrame,
    horizon: int = 28,
    models: Sequence[str] = DEFAULT_MODELS,
    interval_width: float = 0.8,
    forecast_horizon: int | None = None,
    generated_at: pd.Timestamp | str | None = None,
) -> ForecastEvaluation:
    """Backtest every model on the last ``horizon`` days of every series, then forecast ahead.

    Args:
        daily: Long frame ``date, series, sales`` with a ``total`` series.
        horizon: Days held out at the end (shrunk to half the history if the history is shorter).
        models: Model names from ``segstream.models.forecasting.MODELS``.
        interval_width: Central coverage of the bands.
        forecast_horizon: Days of the final forecast; defaults to ``horizon``.
        generated_at: Stamp for the final forecast rows (default: now, UTC).

    Returns:
        The :class:`ForecastEvaluation`.

    Raises:
        ForecastEvalError: If the frame has no ``total`` series or fewer than 2 days.
        ForecastError: For unknown models or a bad interval width (from the forecasting core).
    """
    if TOTAL not in set(daily["series"]):
        raise ForecastEvalError(f"daily sales: no '{TOTAL}' series to backtest")
    daily = align_series(daily)
    h = effective_horizon(daily, horizon)
    cutoff = pd.to_datetime(daily["date"]).max() - pd.Timedelta(days=h)
    train = daily.loc[pd.to_datetime(daily["date"]) <= cutoff]
    predicted = forecast_all(train, h, models=models, interval_width=interval_width)
    frames, notes = [], {}
    for series in sorted(daily["series"].unique(), key=lambda s: (s != TOTAL, s)):
        actual = series_history(daily, series).loc[lambda s: s.index > cutoff]
        frame = pd.DataFrame({"date": actual.index, "series": series, "actual": actual.to_numpy()})
        for model in models:
            part = predicted.loc[(predicted["series"] == series) & (predicted["model"] == model)]
            notes[(series, model)] = str(part["notes"].iloc[0])
            part = part.set_index("date").reindex(actual.index)
            frame[model] = part["yhat"].to_numpy()
            frame[f"{model}_lower"] = part["lower"].to_numpy()
            frame[f"{model}_upper"] = part["upper"].to_numpy()
        frames.append(frame)
    wide = pd.concat(frames, ignore_index=True)
    final = forecast_all(
        daily,
        forecast_horizon or horizon,
        models=models,
        generated_at=generated_at,
        interval_width=interval_width,
    )
    evaluation = ForecastEvaluation(
        metrics={},
        backtest_frame=wide,
        forecasts=final,
        horizon_days=h,
        notes=notes,
    )
    return replace(evaluation, metrics=_metrics(evaluation, models, interval_width))


def _scores(actual: pd.Series, yhat: pd.Series, lower: pd.Series, upper: pd.Series) -> dict[str, float]:
    err = actual.to_numpy(dtype=float) - yhat.to_numpy(dtype=float)
    inside = (actual >= lower) & (actual <= upper)
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "coverage": float(inside.mean()),
    }


def _metrics(evaluation: ForecastEvaluation, models: Sequence[str], interval_width: float) -> dict[str, Any]:
    table = evaluation.metrics_table()
    by_series: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.itertuples(index=False):
        by_series.setdefault(str(row.series), {})[str(row.model)] = {
            "mae": row.mae,
            "rmse": row.rmse,
            "coverage": row.coverage,
        }
    total = by_series[TOTAL]
    metrics: dict[str, Any] = {model: total[model] for model in models}
    metrics["by_segment"] = {
        name.removeprefix(SEGMENT_PREFIX): scores for name, scores in by_series.items() if name != TOTAL
    }
    metrics["best_model"] = min(models, key=lambda m: total[m]["mae"])
    metrics["horizon_days"] = evaluation.horizon_days
    metrics["interval_width"] = interval_width
    return metrics
