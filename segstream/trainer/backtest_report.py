"""How a backtest is shown: terminal tables (rich) and a self-contained HTML page with plots."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from segstream.trainer.backtest import LIFETIMES_BASELINE, USED_BY_SCORE

GROUPING_TITLES = {
    "segments": "trained segments",
    "rfm_map": "RFM map",
    "monetary_quantiles": "monetary quantiles",
}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 60, "b": 50}}


def segment_rows(grouping: dict[str, Any]) -> list[list[str]]:
    """One row per group: id, name, customers, share, repeat rate, mean and median horizon spend."""
    return [
        [str(s["segment"]), s["name"], f"{s['customers']:,}", f"{s['share']:.1%}", f"{s['repeat_rate']:.1%}",
         f"{s['mean_spend']:,.2f}", f"{s['median_spend']:,.2f}"]
        for s in grouping["segments"]
    ]  # fmt: skip


def spend_rows(spend: dict[str, Any]) -> list[list[str]]:
    """One row per spend model: name, RMSE, MAE (the one ``score`` uses is marked)."""
    rows = []
    for name, scores in spend.items():
        if not isinstance(scores, dict) or "rmse" not in scores:
            continue
        label = {USED_BY_SCORE: "used by score (final)", LIFETIMES_BASELINE: "BG/NBD + Gamma-Gamma (lifetimes)",
                 "baseline": "naive: last 90 days"}.get(name, name)  # fmt: skip
        rows.append([label, f"{scores['rmse']:,.2f}", f"{scores['mae']:,.2f}"])
    return rows


def forecast_rows(forecasts: dict[str, Any]) -> list[list[str]]:
    """One row per forecaster: name, MAE, RMSE of the daily total over the horizon."""
    return [
        [m, f"{forecasts[m]['mae']:,.1f}", f"{forecasts[m]['rmse']:,.1f}"]
        for m in ("prophet", "random_forest", "seasonal_naive")
        if m in forecasts
    ]


def check_rows(checks: dict[str, Any]) -> list[list[str]]:
    """One row per target: name and whether it holds."""
    rows = []
    for name, value in checks.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in value.items())
        elif isinstance(value, list):
            value = "none" if not value else ", ".join(value)
        else:
            value = "yes" if value else "NO"
        rows.append([name.replace("_", " "), str(value)])
    return rows


def print_backtest(result: dict[str, Any], console: Any) -> None:
    """The backtest as rich tables on ``console``."""
    from rich.table import Table

    data, bundle, pop = result["data"], result["bundle"], result["population"]
    console.print(
        f"[bold]backtest[/] {data['source']}: trained on {data['events_before']:,} events before {data['cutoff']}, "
        f"judged on the next {data['horizon_days']} days ({data['events_in_horizon']:,} events); "
        f"{data['customers']:,} customers, {pop['repeat_rate']:.1%} of them bought again"
    )
    console.print(f"segmenter {bundle['segmenter']}, k = {bundle['k']}: {bundle['k_reason']}")
    summary = Table(title="does the grouping explain the future? (eta^2)")
    for col in ("grouping", "groups", "eta^2 spend", "eta^2 bought again"):
        summary.add_column(col, justify="right" if col != "grouping" else "left")
    for key, grouping in result["groupings"].items():
        summary.add_row(GROUPING_TITLES.get(key, key), str(grouping["groups"]), f"{grouping['eta2_spend']:.4f}",
                        f"{grouping['eta2_repeat']:.4f}")  # fmt: skip
    console.print(summary)
    for key in ("segments", "rfm_map"):
        table = Table(title=f"{GROUPING_TITLES[key]} in the horizon")
        for col in ("id", "name", "customers", "share", "bought again", "mean spend", "median spend"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for row in segment_rows(result["groupings"][key]):
            table.add_row(*row)
        console.print(table)
    for title, rows, cols in (
        (f"spend in the {data['horizon_days']} days after the cutoff", spend_rows(result["spend_models"]),
         ("model", "RMSE", "MAE")),
        ("daily sales forecasts", forecast_rows(result["forecasts"]), ("model", "MAE", "RMSE")),
        ("targets", check_rows(result["checks"]), ("target", "holds")),
    ):  # fmt: skip
        table = Table(title=title)
        for col in cols:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def _bars(grouping: dict[str, Any], field: str, title: str, fmt: str) -> go.Figure:
    segs = grouping["segments"]
    fig = go.Figure(go.Bar(x=[f"{s['segment']} · {s['name']}" for s in segs], y=[s[field] for s in segs]))
    fig.update_layout(title=title, yaxis_tickformat=fmt, **_LAYOUT)
    return fig


def _forecast_figure(forecasts: dict[str, Any]) -> go.Figure:
    series = forecasts["series"]
    fig = go.Figure()
    for name, values in series.items():
        if name == "dates":
            continue
        fig.add_trace(go.Scatter(x=series["dates"], y=values, mode="lines", name=name,
                                 line={"width": 3 if name == "actual" else 1.5}))  # fmt: skip
    fig.update_layout(title="daily sales after the cutoff: forecasts against what happened", **_LAYOUT)
    return fig


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='table'><tr>{head}</tr>{body}</table>"


def write_backtest_html(result: dict[str, Any], target: Path) -> Path:
    """A self-contained page: the tables, bars per segment, and the forecasts against the actual sales."""
    data, bundle = result["data"], result["bundle"]
    parts = [
        "<h1>segstream backtest</h1>",
        f"<p>{html.escape(str(data['source']))}: trained before {data['cutoff']}, judged on the next "
        f"{data['horizon_days']} days. Bundle <code>{html.escape(bundle['version'])}</code>, segmenter "
        f"{bundle['segmenter']}, k = {bundle['k']}: {html.escape(bundle['k_reason'])}.</p>",
        "<h2>Does the grouping explain the future?</h2>",
        _table(["grouping", "groups", "eta^2 spend", "eta^2 bought again"],
               [[GROUPING_TITLES.get(k, k), str(g["groups"]), f"{g['eta2_spend']:.4f}", f"{g['eta2_repeat']:.4f}"]
                for k, g in result["groupings"].items()]),  # fmt: skip
    ]
    figures: list[go.Figure] = []
    for key in ("segments", "rfm_map"):
        grouping = result["groupings"][key]
        parts.append(f"<h2>{html.escape(GROUPING_TITLES[key])}</h2>")
        parts.append(_table(["id", "name", "customers", "share", "bought again", "mean spend", "median spend"],
                            segment_rows(grouping)))  # fmt: skip
        figures.append(_bars(grouping, "repeat_rate", f"{GROUPING_TITLES[key]}: share who bought again", ".0%"))
        figures.append(_bars(grouping, "mean_spend", f"{GROUPING_TITLES[key]}: mean spend in the horizon", ",.0f"))
    parts.append("<h2>Spend models</h2>" + _table(["model", "RMSE", "MAE"], spend_rows(result["spend_models"])))
    parts.append("<h2>Sales forecasts</h2>" + _table(["model", "MAE", "RMSE"], forecast_rows(result["forecasts"])))
    figures.append(_forecast_figure(result["forecasts"]))
    parts.append("<h2>Targets</h2>" + _table(["target", "holds"], check_rows(result["checks"])))
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))  # plotly.js once, works offline
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse}.table td,.table th{border:1px solid #ddd;padding:4px 8px}"
    )
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>segstream backtest</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
    target = Path(target)
    target.write_text(page, encoding="utf-8")
    return target
