"""The training report: a summary table for the terminal and a self-contained HTML page with the plots."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from segstream.trainer.naming import describe_attributes
from segstream.trainer.preferences import describe_preferences
from segstream.viz.bundle_tables import BundleTables, criteria_table, rfm_crosstab_table, segment_overview
from segstream.viz.figures import (
    confusion_figure,
    elbow_figure,
    forecast_figure,
    pca_scatter,
    segment_profile_figure,
    segment_profile_table,
    segment_size_figure,
    silhouette_figure,
)

REPORT_NAME = "report.html"


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, metric, value) rows of the headline numbers of a bundle's metrics."""
    rows: list[tuple[str, str, str]] = []
    seg = metrics.get("segmentation", {})
    rows.append(("segmentation", "k", str(seg.get("k"))))
    rows.append(("segmentation", "silhouette", _num(seg.get("silhouette"))))
    if "n_components" in seg:
        rows.append(("segmentation", "PCA components", str(seg["n_components"])))
    attrs = metrics.get("attributes") or {}
    if attrs:
        kinds = attrs.get("kinds", {})
        used = ", ".join(f"{n} ({kinds.get(n, '?')})" for n in attrs.get("names", []))
        rows.append(("attributes", "used", used + ("; profile-only" if attrs.get("profile_only") else "")))
        cov = attrs.get("coverage", {})
        if cov.get("missing_from_table"):
            rows.append(("attributes", "imputed", f"{cov['missing_from_table']} customers not in the customer "
                                                  "table (median / other)"))  # fmt: skip
        if cov.get("table_only"):
            rows.append(("attributes", "left out", f"{cov['table_only']} table rows without transactions"))
        names = seg.get("names", {})
        for s, profile in sorted(attrs.get("profiles", {}).items(), key=lambda kv: int(kv[0])):
            rows.append(("attributes", f"{s} {names.get(str(s), '')}".strip(), describe_attributes(profile)))
    prefs = metrics.get("preferences") or {}
    if prefs:
        rows.append(("preferences", "top categories", ", ".join(prefs.get("categories", []))))
        names = seg.get("names", {})
        for s, profile in sorted(prefs.get("profiles", {}).items(), key=lambda kv: int(kv[0])):
            rows.append(("preferences", f"{s} {names.get(str(s), '')}".strip(), describe_preferences(profile)))
    clf = metrics.get("classifier", {})
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        rows.append(("classifier", key, _num(clf.get(key))))
    for section, key in (("purchase 90d", "purchase"), ("forecast (total)", "forecast")):
        skipped = (metrics.get(key) or {}).get("skipped")
        if skipped:
            rows.append((section, "skipped", str(skipped)))
    for model, scores in sorted(metrics.get("purchase", {}).items(), key=lambda kv: kv[0] != "baseline"):
        if isinstance(scores, dict) and "rmse" in scores:
            rows.append(
                ("purchase 90d", model, f"RMSE {_num(scores['rmse'])}  MAE {_num(scores.get('mae'))}")
            )
    for model in ("seasonal_naive", "prophet", "random_forest"):
        scores = metrics.get("forecast", {}).get(model)
        if isinstance(scores, dict):
            rows.append(
                ("forecast (total)", model, f"MAE {_num(scores.get('mae'))}  RMSE {_num(scores.get('rmse'))}")
            )
    for stage, seconds in metrics.get("timings_s", {}).items():
        rows.append(("timing", stage, f"{seconds:.1f} s"))
    return rows


def write_report(bundle_dir: Path, out: Path | None = None) -> Path:
    """Write the HTML report of a bundle (default: ``<bundle>/../<version>-report.html``).

    The report is written beside the bundle, not into it: the bundle's files are checksummed.
    """
    tables = BundleTables.open(bundle_dir)
    names = tables.segment_names
    metrics = tables.metrics
    seg = metrics.get("segmentation", {})
    attrs = metrics.get("attributes") or {}
    profile_only = bool(attrs.get("profile_only"))
    figures: list[tuple[str, go.Figure]] = [
        ("Choosing k", elbow_figure(seg)),
        ("", silhouette_figure(seg)),
        ("Segments", pca_scatter(tables.customers, names)),
        ("", segment_size_figure(tables.customers["segment"].value_counts().to_dict(), names)),
    ]
    if not profile_only:
        figures.append(("", segment_profile_figure(tables.customers, names)))
    figures.append(("Segment classifier", confusion_figure(metrics.get("classifier", {}), names)))
    if not profile_only:
        figures.append(("Sales forecast", forecast_figure(tables.daily_sales, tables.forecasts, tables.backtest)))
    parts = [
        f"<h1>segstream training report</h1><p>bundle <code>{html.escape(tables.manifest.version)}</code>, "
        f"created {html.escape(tables.manifest.created_at)}, {tables.manifest.info.get('customers', '?')} "
        f"customers, {tables.manifest.info.get('events', '?')} events</p>",
        "<h2>Summary</h2>",
        _rows_html(summary_rows(metrics)),
        "<h2>Segments</h2>",
        segment_overview(metrics, names).to_html(classes="table", index=False),
        _name_checks_html(seg.get("name_checks", {})),
        _attributes_html(attrs, names),
        _preferences_html(metrics.get("preferences") or {}, names),
        "<h2>How k was chosen</h2>",
        f"<p>{html.escape(str(seg.get('k_reason', '')))}</p>",
        criteria_table(metrics).to_html(classes="table", index=False),
    ]
    if profile_only:
        parts.append("<h2>Not trained</h2><ul>" + "".join(
            f"<li>{html.escape(what)}: {html.escape(str((metrics.get(what) or {}).get('skipped', '')))}</li>"
            for what in ("purchase", "forecast")) + "</ul>")  # fmt: skip
    else:
        parts += [
            "<h2>Segments on the RFM map</h2>",
            rfm_crosstab_table(metrics, names).to_html(classes="table"),
            "<h2>Segment profiles</h2>",
            segment_profile_table(tables.customers, names).to_html(classes="table"),
        ]
    first = True
    for heading, fig in figures:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        # The first figure embeds plotly.js so the page works offline; the others reuse it.
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
        first = False
    parts.append("<h2>Decision tree rules</h2><pre>" + html.escape(tables.rules_text) + "</pre>")
    target = Path(out) if out else tables.path.parent / f"{tables.manifest.version}-{REPORT_NAME}"
    target.write_text(_page("".join(parts)), encoding="utf-8")
    return target


def attribute_profile_table(attrs: dict[str, Any], names: dict[int, str]) -> pd.DataFrame:
    """One row per segment: numeric attribute medians and each categorical attribute's top level share."""
    rows = []
    for s, profile in sorted((attrs.get("profiles") or {}).items(), key=lambda kv: int(kv[0])):
        row: dict[str, Any] = {"segment": int(s), "name": names.get(int(s), str(s))}
        for name, stats in profile.get("numeric", {}).items():
            row[f"{name} (median)"] = round(float(stats["median"]), 4)
            row[f"{name} pct"] = f"{float(stats['rank']):.0%}"
        for name, stats in profile.get("categorical", {}).items():
            row[name] = f"{stats['level']} {float(stats['share']):.0%} (all {float(stats['overall']):.0%})"
        rows.append(row)
    return pd.DataFrame(rows)


def _attributes_html(attrs: dict[str, Any], names: dict[int, str]) -> str:
    if not attrs:
        return ""
    kinds = attrs.get("kinds", {})
    used = ", ".join(f"<code>{html.escape(n)}</code> ({html.escape(str(kinds.get(n, '?')))})"
                     for n in attrs.get("names", []))  # fmt: skip
    cov = attrs.get("coverage", {})
    mode = ("profile-only: segmented on the customer attributes alone, no transactions"
            if attrs.get("profile_only") else "joined to the behaviour features")  # fmt: skip
    notes = f"<p>Customer attributes ({mode}): {used}. {cov.get('customers', '?')} customers segmented"
    if cov.get("missing_from_table"):
        notes += f"; {cov['missing_from_table']} not in the customer table, attributes imputed (median / other)"
    if cov.get("table_only"):
        notes += f"; {cov['table_only']} table rows without transactions left out"
    notes += ".</p>"
    table = attribute_profile_table(attrs, names).to_html(classes="table", index=False)
    return f"<h2>Customer attributes per segment</h2>{notes}{table}"


def preference_profile_table(prefs: dict[str, Any], names: dict[int, str]) -> pd.DataFrame:
    """One row per segment: the mean share of spend in each top category and the rest, categories bought."""
    rows = []
    for s, profile in sorted((prefs.get("profiles") or {}).items(), key=lambda kv: int(kv[0])):
        row: dict[str, Any] = {"segment": int(s), "name": names.get(int(s), str(s))}
        row.update({category: f"{float(v):.0%}" for category, v in profile["share"].items()})
        row["categories bought (median)"] = profile["categories_bought"]
        rows.append(row)
    return pd.DataFrame(rows)


def _preferences_html(prefs: dict[str, Any], names: dict[int, str]) -> str:
    if not prefs:
        return ""
    notes = (f"<p>Product preferences joined to the behaviour features: each customer's share of spend in the "
             f"training data's top {len(prefs.get('categories', []))} categories, in the rest, and how many "
             "categories they bought from (an order of several categories is one purchase, its spend split by "
             "its lines). Mean share per segment:</p>")  # fmt: skip
    return (f"<h2>Product preferences per segment</h2>{notes}"
            + preference_profile_table(prefs, names).to_html(classes="table", index=False))


def _name_checks_html(checks: dict[str, Any]) -> str:
    if not checks.get("checked"):
        return ""
    demoted = checks.get("demoted") or ["no promising name had to be withdrawn"]
    items = "".join(f"<li>{html.escape(d)}</li>" for d in demoted)
    return f"<p>Promising names checked against {len(checks.get('periods', []))} held-out periods:</p><ul>{items}</ul>"


def _rows_html(rows: list[tuple[str, str, str]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in rows
    )
    return f"<table class='table'><tr><th>section</th><th>metric</th><th>value</th></tr>{body}</table>"


def _page(body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse}.table td,.table th{border:1px solid #ddd;padding:4px 8px}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}"
    )
    head = f"<meta charset='utf-8'><title>segstream report</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4g}"
