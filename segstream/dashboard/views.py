"""Tables the pages show: segment changes and a customer's features with units."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from segstream.models.features import FEATURE_NAMES
from segstream.viz.figures import segment_color, segment_label

UNITS = {"recency_days": "days", "tenure_days": "days", "mean_days_between": "days", "frequency": "purchases",
         "purchase_rate": "purchases / 30 days", "returns_count": "returns"}  # fmt: skip


def changes_table(records: list[dict[str, Any]], names: dict[int, str]) -> pd.DataFrame:
    """Segment changes as a table: customer, from, to, cause, event time, model version (newest first)."""
    rows = []
    for r in records:
        previous, current = r.get("previous_segment"), r.get("segment")
        when = r.get("event_time_ms", r.get("event_time"))
        rows.append({
            "customer": r.get("customer_id"),
            "from": "— (new)" if previous is None else _label(previous, r.get("previous_segment_name"), names),
            "to": _label(current, r.get("segment_name"), names) if current is not None else "?",
            "cause": r.get("cause", ""),
            "event time": fmt_time(when) if isinstance(when, int | float) else str(when or "—"),
            "model": r.get("model_version", ""),
            "_sort": when if isinstance(when, int | float) else pd.Timestamp(when or 0).value // 1_000_000,
        })  # fmt: skip
    table = pd.DataFrame(rows).sort_values("_sort", ascending=False).drop(columns="_sort")
    return table.head(100)


def _label(segment: Any, name: Any, names: dict[int, str]) -> str:
    # The record's own name wins: it is the name under the model version that made the change.
    return f"{int(segment)} · {name}" if name else segment_label(int(segment), names)


def features_table(features: dict[str, float]) -> pd.DataFrame:
    """Feature, value and unit, in FEATURE_NAMES order."""
    rows = [{"feature": name, "value": round(float(features[name]), 2), "unit": unit_of(name)}
            for name in FEATURE_NAMES if name in features]  # fmt: skip
    return pd.DataFrame(rows)


def unit_of(name: str) -> str:
    """The unit of a feature, in words (money features are in the data's currency)."""
    if name in UNITS:
        return UNITS[name]
    if name.startswith("purchases_"):
        return f"purchases in last {name.split('_')[1][:-1]} days"
    if name.startswith("spend_"):
        return f"net spend in last {name.split('_')[1][:-1]} days"
    return "money"


def fmt_time(ms: int | float | None) -> str:
    """Epoch ms as ``2025-12-31 14:05 UTC`` (or an em dash)."""
    if not ms:
        return "—"
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def segment_badge(label: str, segment: int, names: dict[int, str]) -> str:
    """HTML of a segment shown big in its colour, with a small label above and its id below."""
    return (f"<div style='font-size:0.9rem;color:#555'>{label}</div><div style='font-size:1.6rem;font-weight:600;"
            f"color:{segment_color(segment)}'>● {html.escape(names.get(segment, 'unknown'))}</div>"
            f"<div style='color:#777'>segment id {segment}</div>")  # fmt: skip
