"""Forecasts page: daily sales with forecasts, intervals and backtests; the worker's latest refresh."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from segstream.dashboard import charts, session
from segstream.viz import figures


def render() -> None:
    """Draw the page."""
    tables = session.require_bundle()
    session.page_header(
        "Forecasts", tables, "Daily net sales: history, backtest on held-out days and forecasts with intervals"
    )
    names = tables.segment_names
    daily, forecasts, backtest = tables.daily_sales, tables.forecasts, tables.backtest
    metrics = tables.metrics.get("forecast", {})

    series_ids = ["total", *sorted((s for s in daily["series"].unique() if s != "total"), key=_segment_order)]
    left, mid, right = st.columns([2, 2, 1])
    series = left.selectbox("Series", series_ids, format_func=lambda s: _series_label(s, names))
    max_h = int(forecasts.groupby("series")["date"].nunique().max()) if not forecasts.empty else 1
    horizon = mid.slider("Forecast horizon (days)", 1, max(max_h, 1), max(max_h, 1))
    history = right.number_input("History shown (days)", 30, 730, 120, step=30)

    models = sorted(forecasts["model"].unique()) if not forecasts.empty else []
    best = metrics.get("best_model")
    shown = st.multiselect("Models shown", models, default=[best] if best in models else models,
                           format_func=lambda m: charts.MODEL_LABELS.get(m, m))  # fmt: skip
    dropped = [c for m in models if m not in shown for c in (m, f"{m}_lower", f"{m}_upper")]
    fig = figures.forecast_figure(
        daily,
        forecasts.loc[forecasts["model"].isin(shown)],
        backtest.drop(columns=dropped, errors="ignore"),
        series=series,
        history_days=int(history),
        horizon=horizon,
        title=f"Daily net sales and forecast: {_series_label(series, names)}",
    )
    fig.update_layout(height=480)
    st.plotly_chart(fig)
    st.caption(f"Shaded bands: {metrics.get('interval_width', 0.8):.0%} prediction intervals. Dotted lines: each "
               f"model's predictions for the {metrics.get('horizon_days', '?')} held-out days, against the actuals. "
               f"Best model in the backtest: {charts.MODEL_LABELS.get(best, best or '—')}.")  # fmt: skip

    st.subheader("Backtest: how each model did on the held-out days")
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.backtest_error_figure(metrics, series))
    right.dataframe(_score_table(metrics, series), hide_index=True)
    right.caption("MAE and RMSE in sales per day; coverage: share of held-out days inside the band; "
                  "skill: MAE reduction against seasonal-naive (positive is better).")  # fmt: skip
    if metrics.get("best_model"):
        right.markdown(
            f"Best on the total series: **{charts.MODEL_LABELS.get(metrics['best_model'], metrics['best_model'])}**"
        )

    st.subheader("Latest refresh from the streaming worker")
    _worker_refresh(tables, series, horizon, names, shown)


def _worker_refresh(tables: Any, series: str, horizon: int, names: dict[int, str], shown: list[str]) -> None:
    refresh, source, why = _latest_refresh()
    if refresh is None or refresh.empty:
        session.missing(
            "Worker forecast refresh",
            why,
            session.HOW_TO_START_LIVE
            + " The worker refreshes forecasts from the bundle's history plus the streamed daily sales.",
        )
        return
    reader, _ = session.live_reader()
    streamed = None
    if reader is not None:
        streamed, _ = session.live_call(reader.daily_sales)
    daily = tables.daily_sales if streamed is None or streamed.empty else pd.concat([tables.daily_sales, streamed])
    daily = daily.groupby(["date", "series"], as_index=False)["sales"].last()
    meta = refresh.attrs.get("meta", {})
    if refresh["model"].isin(shown).any():  # the models picked above, when the worker ran any of them
        refresh = refresh.loc[refresh["model"].isin(shown)].copy()
    generated = refresh["generated_at"].max() if "generated_at" in refresh else "unknown time"
    if series not in set(refresh["series"]):
        st.info(f"The worker's refresh ({source}) has no series {_series_label(series, names)}.")
        return
    st.plotly_chart(figures.forecast_figure(daily, refresh, None, series=series, horizon=horizon,
                                            title=f"Worker refresh ({source}, generated {generated})"))  # fmt: skip
    if meta:
        st.caption(f"Model {meta.get('model_version', '?')}; fitted on {meta.get('history_days', '?')} days of "
                   f"history up to {meta.get('last_day', '?')}, of which {meta.get('streamed_days', '?')} days "
                   "streamed by the worker.")  # fmt: skip


def _latest_refresh() -> tuple[pd.DataFrame | None, str, str | None]:
    """The newest forecast rows from Redis, else from the ``sales-forecasts`` topic."""
    reader, why = session.live_reader()
    if reader is not None:
        payload, problem = session.live_call(reader.forecast)
        frame = forecast_rows(payload)
        if frame is not None and not frame.empty:
            return frame, "Redis", None
        why = problem or "the worker has not stored a forecast refresh in Redis yet"
    records, problem = session.topic_records(session.settings().topics.sales_forecasts, n=2000)
    frame = forecast_rows(records)
    if frame is not None and not frame.empty and "generated_at" in frame:
        frame = frame.loc[frame["generated_at"] == frame["generated_at"].max()]
        return frame, "sales-forecasts topic", None
    return None, "", problem or why or "no records on the sales-forecasts topic"


def forecast_rows(payload: Any) -> pd.DataFrame | None:
    """Forecast rows (series, date, yhat, lower, upper, model, ...) from a stored refresh or topic records.

    Accepts a list of rows, or an object with the rows under ``rows``/``forecasts``/``forecast`` (its other
    fields, e.g. ``generated_at``, are copied onto the rows); a row without ``series`` is the total.
    """
    if payload is None:
        return None
    rows: list[dict[str, Any]] = []
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if not isinstance(item, dict):
            continue
        nested = next((item[k] for k in ("rows", "forecasts", "forecast") if isinstance(item.get(k), list)), None)
        if nested is None:
            rows.append(item)
            continue
        extra = {k: v for k, v in item.items() if not isinstance(v, list | dict)}
        rows += [{**extra, **r} for r in nested if isinstance(r, dict)]
    frame = pd.DataFrame(rows)
    if isinstance(payload, dict):
        frame.attrs["meta"] = {k: v for k, v in payload.items() if not isinstance(v, list | dict)}
    if frame.empty or not {"date", "yhat"} <= set(frame.columns):
        return None
    frame["date"] = pd.to_datetime(frame["date"], utc=True).dt.tz_localize(None)
    if "series" not in frame:
        frame["series"] = "total"
    frame["series"] = frame["series"].fillna("total").astype(str)
    for column in ("lower", "upper"):
        if column not in frame:
            frame[column] = frame["yhat"]
    if "model" not in frame:
        frame["model"] = "worker"
    return frame


def _score_table(metrics: dict[str, Any], series: str) -> pd.DataFrame:
    scores = metrics if series == "total" else metrics.get("by_segment", {}).get(series.split(":")[-1], {})
    models = [m for m, v in scores.items() if isinstance(v, dict) and "mae" in v]
    base = scores.get("seasonal_naive", {}).get("mae") if "seasonal_naive" in models else None
    rows = []
    for model in models:
        s = scores[model]
        skill = (1 - s["mae"] / base) if base else None
        rows.append({"model": charts.MODEL_LABELS.get(model, model), "MAE": round(s["mae"], 1),
                     "RMSE": round(s.get("rmse", float("nan")), 1),
                     "coverage": f"{s['coverage']:.0%}" if "coverage" in s else "—",
                     "skill vs naive": f"{skill:+.0%}" if skill is not None else "—"})  # fmt: skip
    return pd.DataFrame(rows).sort_values("MAE") if rows else pd.DataFrame(columns=["model", "MAE"])


def _series_label(series: str, names: dict[int, str]) -> str:
    if series == "total":
        return "All customers (total)"
    seg = _segment_order(series)
    return f"Segment {figures.segment_label(seg, names)}" if seg >= 0 else series


def _segment_order(series: str) -> int:
    try:
        return int(str(series).rsplit(":", 1)[-1])
    except ValueError:
        return -1


if __name__ == "__main__":
    render()
