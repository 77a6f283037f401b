"""Plotly figures of a bundle: model selection, clusters, profiles, classifier and forecasts.

Every figure colours a segment the same way (by its id), so a segment looks the same on every page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# Colour-blind-friendly palette (Okabe-Ito, then Tableau for more segments).
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1",
)  # fmt: skip
MODEL_COLORS = {"prophet": "#0072B2", "random_forest": "#009E73", "seasonal_naive": "#999999"}
PROFILE_FEATURES = (
    "recency_days", "frequency", "monetary", "aov", "tenure_days", "purchase_rate",
    "spend_365d", "returns_count", "clv_12m_predicted",
)  # fmt: skip
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 60, "b": 50}}


def segment_color(segment: int) -> str:
    """The colour of a segment id, the same on every figure and page."""
    return PALETTE[int(segment) % len(PALETTE)]


def segment_label(segment: int, names: Mapping[int, str]) -> str:
    """``"2 · Champions"``: id and name, so two retrains' segments can be told apart."""
    return f"{segment} · {names.get(int(segment), 'unknown')}"


def elbow_figure(segmentation: Mapping[str, Any]) -> go.Figure:
    """Inertia by k with the chosen k marked."""
    ks, values = _curve(segmentation.get("inertia_by_k", {}))
    fig = go.Figure(go.Scatter(x=ks, y=values, mode="lines+markers", name="inertia"))
    _mark_k(fig, segmentation.get("k"))
    fig.update_layout(title="Elbow: K-Means inertia by k", xaxis_title="k (segments)",
                      yaxis_title="inertia (within-cluster sum of squares)", **_LAYOUT)  # fmt: skip
    return fig


def silhouette_figure(segmentation: Mapping[str, Any]) -> go.Figure:
    """Silhouette by k with the chosen k marked."""
    ks, values = _curve(segmentation.get("silhouette_by_k", {}))
    fig = go.Figure(go.Scatter(x=ks, y=values, mode="lines+markers", name="silhouette", line_color="#009E73"))
    _mark_k(fig, segmentation.get("k"))
    fig.update_layout(title="Silhouette by k (higher is better)", xaxis_title="k (segments)",
                      yaxis_title="mean silhouette", **_LAYOUT)  # fmt: skip
    return fig


def pca_scatter(customers: pd.DataFrame, names: Mapping[int, str], max_points: int = 6000,
                highlight: str | None = None) -> go.Figure:  # fmt: skip
    """Customers on the first two principal components, coloured by segment (sampled when large)."""
    shown = customers.sample(max_points, random_state=0) if len(customers) > max_points else customers
    fig = go.Figure()
    for segment, group in shown.groupby("segment", sort=True):
        fig.add_trace(
            go.Scattergl(
                x=group["pca_1"], y=group["pca_2"], mode="markers", name=segment_label(segment, names),
                marker={"size": 5, "opacity": 0.6, "color": segment_color(segment)},
                text=group["customer_id"], hovertemplate="%{text}<extra>%{fullData.name}</extra>",
            )
        )  # fmt: skip
    if highlight is not None:
        row = customers.loc[customers["customer_id"] == highlight]
        if not row.empty:
            fig.add_trace(go.Scatter(x=row["pca_1"], y=row["pca_2"], mode="markers+text", name=highlight,
                                     text=[highlight], textposition="top center",
                                     marker={"size": 16, "symbol": "star", "color": "black"}))  # fmt: skip
    fig.update_layout(title="Customers by segment (PCA)", xaxis_title="principal component 1",
                      yaxis_title="principal component 2", legend_title="segment", **_LAYOUT)  # fmt: skip
    return fig


def segment_profile_table(customers: pd.DataFrame, names: Mapping[int, str]) -> pd.DataFrame:
    """Size, share and mean of the main features per segment, in original units."""
    features = [f for f in PROFILE_FEATURES if f in customers.columns]
    grouped = customers.groupby("segment")
    table = grouped[features].mean().round(2)
    table.insert(0, "customers", grouped.size())
    table.insert(1, "share_%", (100 * grouped.size() / len(customers)).round(1))
    table.insert(0, "name", [names.get(int(s), "unknown") for s in table.index])
    return table


def segment_profile_figure(customers: pd.DataFrame, names: Mapping[int, str]) -> go.Figure:
    """Heatmap of each segment's feature means relative to all customers (z-scores of the means)."""
    features = [f for f in PROFILE_FEATURES if f in customers.columns]
    means = customers.groupby("segment")[features].mean()
    spread = customers[features].std(ddof=0).replace(0, 1.0)
    z = (means - customers[features].mean()) / spread
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(), x=features, y=[segment_label(s, names) for s in z.index], colorscale="RdBu",
            zmid=0, text=means.round(1).to_numpy(), texttemplate="%{text}",
            colorbar={"title": "vs. average (sd)"},
        )
    )  # fmt: skip
    fig.update_layout(title="Segment profiles: mean feature values (colour: above/below average)", **_LAYOUT)
    return fig


def segment_size_figure(
    sizes: Mapping[int, int], names: Mapping[int, str], title: str = "Segment sizes"
) -> go.Figure:
    """Bar chart of customers per segment."""
    ids = sorted(int(s) for s in sizes)
    fig = go.Figure(
        go.Bar(x=[segment_label(s, names) for s in ids], y=[sizes[s] for s in ids],
               marker_color=[segment_color(s) for s in ids])
    )  # fmt: skip
    fig.update_layout(title=title, xaxis_title="segment", yaxis_title="customers", **_LAYOUT)
    return fig


def confusion_figure(classifier: Mapping[str, Any], names: Mapping[int, str]) -> go.Figure:
    """The decision tree's confusion matrix on the held-out customers."""
    matrix = np.asarray(classifier.get("confusion_matrix", []), dtype=float)
    labels = [segment_label(int(s), names) for s in classifier.get("labels", range(len(matrix)))]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues", text=matrix.astype(int),
                               texttemplate="%{text}", colorbar={"title": "customers"}))  # fmt: skip
    fig.update_layout(title=f"Decision tree confusion matrix (accuracy {classifier.get('accuracy', 0):.1%})",
                      xaxis_title="predicted segment", yaxis_title="K-Means segment",
                      yaxis_autorange="reversed", **_LAYOUT)  # fmt: skip
    return fig


def forecast_figure(daily: pd.DataFrame, forecasts: pd.DataFrame, backtest: pd.DataFrame | None = None,
                    series: str = "total", history_days: int = 120, horizon: int | None = None,
                    title: str | None = None) -> go.Figure:  # fmt: skip
    """Actual daily sales, the backtest predictions and the forecasts with their intervals."""
    fig = go.Figure()
    actual = daily.loc[daily["series"] == series].sort_values("date").tail(history_days)
    fig.add_trace(go.Scatter(x=actual["date"], y=actual["sales"], name="actual", line_color="#333333"))
    future = forecasts.loc[forecasts["series"] == series].sort_values("date")
    if horizon is not None:
        future = future.loc[future["date"] <= future["date"].min() + pd.Timedelta(days=horizon - 1)]
    for model, part in future.groupby("model", sort=True):
        color = MODEL_COLORS.get(str(model), "#555555")
        fig.add_trace(go.Scatter(x=part["date"], y=part["upper"], line_width=0, showlegend=False,
                                 hoverinfo="skip", legendgroup=str(model)))  # fmt: skip
        fig.add_trace(go.Scatter(x=part["date"], y=part["lower"], fill="tonexty", line_width=0,
                                 fillcolor=_translucent(color), name=f"{model} interval",
                                 legendgroup=str(model), hoverinfo="skip"))  # fmt: skip
        fig.add_trace(go.Scatter(x=part["date"], y=part["yhat"], name=f"{model} forecast", line_color=color,
                                 legendgroup=str(model)))  # fmt: skip
    if backtest is not None and not backtest.empty:
        held = backtest.loc[backtest["series"] == series]
        for model, color in MODEL_COLORS.items():
            if model in held.columns:
                fig.add_trace(go.Scatter(x=held["date"], y=held[model], name=f"{model} backtest",
                                         line={"color": color, "dash": "dot"}, legendgroup=model))  # fmt: skip
    fig.update_layout(title=title or f"Daily sales and forecast: {series}", xaxis_title="date",
                      yaxis_title="net sales per day", **_LAYOUT)  # fmt: skip
    return fig


def _curve(by_k: Mapping[Any, Any]) -> tuple[list[int], list[float]]:
    pairs = sorted((int(k), float(v)) for k, v in by_k.items() if v is not None)
    return [k for k, _ in pairs], [v for _, v in pairs]


def _mark_k(fig: go.Figure, k: Any) -> None:
    if k is not None:
        fig.add_vline(x=int(k), line_dash="dash", line_color="#D55E00", annotation_text=f"chosen k={int(k)}")


def _translucent(hex_color: str, alpha: float = 0.18) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
