"""Figures only the dashboard draws: live mix and throughput, streamed sales, backtest errors, one customer.

Bundle figures (PCA, profiles, elbow, confusion, forecasts) live in :mod:`segstream.viz.figures`, shared with
the HTML report; these reuse its palette and layout so a segment has one colour everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from segstream.viz.figures import MODEL_COLORS, PROFILE_FEATURES, segment_color, segment_label

_LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
                           "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}}  # fmt: skip
MODEL_LABELS = {"prophet": "Prophet", "random_forest": "Random forest", "seasonal_naive": "Seasonal naive"}


def mix_over_time_figure(mix: pd.DataFrame, names: Mapping[int, str]) -> go.Figure:
    """Stacked area of each segment's share of customers over time (``mix``: time, segment, share)."""
    fig = go.Figure()
    for segment, part in mix.sort_values("time").groupby("segment", sort=True):
        fig.add_trace(go.Scatter(
            x=part["time"], y=100 * part["share"], name=segment_label(int(segment), names), stackgroup="mix",
            mode="lines", line={"width": 0.5, "color": segment_color(int(segment))},
            hovertemplate="%{y:.1f}%<extra>%{fullData.name}</extra>",
        ))  # fmt: skip
    fig.update_layout(title="Segment mix over time", xaxis_title="time", yaxis_title="share of customers (%)",
                      yaxis_range=[0, 100], **_LAYOUT)  # fmt: skip
    return fig


def mix_comparison_figure(live: Mapping[int, int], training: Mapping[int, int], names: Mapping[int, str]) -> go.Figure:
    """Each segment's share now (live) next to its share at training time."""
    ids = sorted({int(s) for s in live} | {int(s) for s in training})
    fig = go.Figure()
    for label, counts, opacity in (("at training", training, 0.35), ("live now", live, 1.0)):
        total = max(sum(counts.values()), 1)
        shares = [100 * counts.get(s, 0) / total for s in ids]
        fig.add_trace(go.Bar(
            x=[segment_label(s, names) for s in ids], y=shares, name=label, opacity=opacity,
            marker_color=[segment_color(s) for s in ids], text=[f"{v:.0f}%" for v in shares],
            textposition="outside", hovertemplate="%{y:.1f}%<extra>" + label + "</extra>",
        ))  # fmt: skip
    fig.update_layout(title="Segment mix: live vs. training (faded)", barmode="group", xaxis_title="segment",
                      yaxis_title="share of customers (%)", showlegend=False, **_LAYOUT)  # fmt: skip
    return fig


def metric_line_figure(frame: pd.DataFrame, column: str, title: str, unit: str, color: str = "#0072B2") -> go.Figure:
    """One monitoring metric over time (``frame``: time and ``column``), one line per worker if several."""
    fig = go.Figure()
    groups = (
        list(frame.groupby("worker", sort=True))
        if "worker" in frame and frame["worker"].nunique() > 1
        else [(None, frame)]
    )
    for i, (worker, part) in enumerate(groups):
        fig.add_trace(go.Scatter(x=part["time"], y=part[column], mode="lines+markers", marker_size=4,
                                 line={"color": color, "dash": ("solid", "dot", "dash", "dashdot")[i % 4]},
                                 name=str(worker or column)))  # fmt: skip
    fig.update_layout(title=title, xaxis_title="time", yaxis_title=unit, showlegend=len(groups) > 1, **_LAYOUT)
    return fig


def streamed_sales_figure(sales: pd.DataFrame, names: Mapping[int, str], days: int = 60) -> go.Figure:
    """Daily net sales the worker streamed, stacked by segment (``sales``: date, series, sales)."""
    by_segment = sales.loc[sales["series"].str.startswith("segment:")]
    recent = sorted(sales["date"].unique())[-days:]
    by_segment = by_segment.loc[by_segment["date"].isin(recent)]
    fig = go.Figure()
    for series, part in by_segment.groupby("series", sort=True):
        segment = int(str(series).split(":", 1)[1])
        fig.add_trace(go.Bar(x=part["date"], y=part["sales"], name=segment_label(segment, names),
                             marker_color=segment_color(segment)))  # fmt: skip
    fig.update_layout(title=f"Streamed net sales per day by segment (last {days} days of event time)",
                      barmode="relative", xaxis_title="event date (UTC)", yaxis_title="net sales per day",
                      **_LAYOUT)  # fmt: skip
    return fig


def backtest_error_figure(metrics: Mapping[str, Any], series: str = "total") -> go.Figure:
    """MAE of each model on the held-out days, with the seasonal-naive baseline as a dashed line."""
    scores = metrics if series == "total" else metrics.get("by_segment", {}).get(series.split(":")[-1], {})
    models = [m for m in scores if isinstance(scores.get(m), dict) and "mae" in scores[m]]
    maes = [float(scores[m]["mae"]) for m in models]
    fig = go.Figure(go.Bar(
        x=[MODEL_LABELS.get(m, m) for m in models], y=maes, marker_color=[MODEL_COLORS.get(m, "#555") for m in models],
        text=[f"{v:,.0f}" for v in maes], textposition="outside", hovertemplate="MAE %{y:,.1f}<extra></extra>",
    ))  # fmt: skip
    baseline = scores.get("seasonal_naive", {}).get("mae") if isinstance(scores.get("seasonal_naive"), dict) else None
    if baseline is not None:
        fig.add_hline(y=float(baseline), line_dash="dash", line_color="#999999",
                      annotation_text="seasonal-naive baseline", annotation_position="bottom right")  # fmt: skip
    fig.update_layout(title=f"Backtest error: {series} (lower is better)", xaxis_title="model",
                      yaxis_title="mean absolute error (sales per day)", showlegend=False, **_LAYOUT)  # fmt: skip
    return fig


def customer_percentile_figure(
    values: Mapping[str, float],
    customers: pd.DataFrame,
    segment: int | None,
    names: Mapping[int, str],
    features: Sequence[str] = PROFILE_FEATURES,
) -> go.Figure:
    """Where a customer stands among all customers on each feature (percentile), with the segment's median.

    Percentiles read the same for money, days and counts, so one chart can show every feature.
    """
    shown = [f for f in features if f in customers.columns and f in values]
    pct = [_percentile(customers[f].to_numpy(), float(values[f])) for f in shown]
    color = segment_color(segment) if segment is not None else "#333333"
    fig = go.Figure(go.Bar(
        y=shown, x=pct, orientation="h", marker_color=color, name="this customer",
        text=[f"{values[f]:,.1f}" for f in shown], textposition="outside",
        hovertemplate="%{y}: value %{text}, percentile %{x:.0f}<extra></extra>",
    ))  # fmt: skip
    if segment is not None and "segment" in customers.columns:
        members = customers.loc[customers["segment"] == segment]
        if not members.empty:
            medians = [_percentile(customers[f].to_numpy(), float(members[f].median())) for f in shown]
            fig.add_trace(go.Scatter(y=shown, x=medians, mode="markers", name="segment median",
                                     marker={"symbol": "line-ns-open", "size": 22, "color": "black",
                                             "line": {"width": 3}}))  # fmt: skip
    who = segment_label(segment, names) if segment is not None else "no segment"
    fig.update_layout(title=f"Where this customer stands ({who})",
                      xaxis_title="percentile among training customers (0 = lowest)",
                      xaxis_range=[0, 115], yaxis_autorange="reversed", height=420, **_LAYOUT)  # fmt: skip
    return fig


def _percentile(column: np.ndarray, value: float) -> float:
    column = column[np.isfinite(column)]
    if len(column) == 0:
        return 50.0
    below = np.count_nonzero(column < value)
    equal = np.count_nonzero(column == value)
    return float(100.0 * (below + 0.5 * equal) / len(column))
