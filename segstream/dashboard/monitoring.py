"""Turn the worker's ``monitoring`` records into tidy frames for the Live page.

Field names are read leniently (``events_per_s`` or ``events_per_second``, ``segment_mix`` or
``segment_distribution`` ...) so the page keeps working while the record format settles; a field that is
absent is simply not shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

# Column -> accepted field names (first found wins); nested "a.b" paths allowed.
FIELDS: dict[str, tuple[str, ...]] = {
    "events_per_s": ("events_per_s", "events_per_second", "rate.events_per_s", "throughput"),
    "processed": ("processed", "events_processed", "processed_total", "counts.processed"),
    "dead_letters": ("dead_letters", "dead_letters_total", "counts.dead_letters"),
    "duplicates": ("duplicates", "duplicates_skipped", "duplicates_total", "counts.duplicates"),
    "lag": ("consumer_lag", "lag", "lag_total", "lag.total"),
    "drift_psi": ("drift_psi", "psi", "drift.psi", "drift_score", "drift"),
    "dead_letter_share": ("dead_letter_share", "dead_letters.share"),
    "dead_letters_window": ("dead_letters_window", "dead_letters.window"),
    "events_window": ("events_window",),
    "dead_letter_window_s": ("dead_letter_window_s", "dead_letters.window_s"),
    "dead_letter_alert": ("dead_letter_alert", "dead_letters.alert"),
    "dead_letter_alert_share": ("dead_letter_alert_share", "dead_letters.threshold"),
    "model_version": ("model_version",),
    "worker": ("worker", "worker_id"),
}
# How the newest record of each worker adds up to the whole deployment's figure.
# The dead-letter share: the worst worker's, unless the window counts allow the deployment's own (see below).
_COMBINE = {"events_per_s": "sum", "processed": "sum", "dead_letters": "sum", "duplicates": "sum", "lag": "sum",
            "drift_psi": "max", "dead_letter_share": "max", "dead_letters_window": "sum", "events_window": "sum",
            "dead_letter_window_s": "max", "dead_letter_alert": "max",
            "dead_letter_alert_share": "min"}  # fmt: skip
_REASON_FIELDS = {"total": ("dead_letters_by_reason", "dead_letters.by_reason"),
                  "window": ("dead_letters_by_reason_window", "dead_letters.by_reason_window")}  # fmt: skip
_MIX_FIELDS = ("segment_mix", "segment_distribution", "segments", "segment_counts", "mix")
_TIME_FIELDS = ("generated_at", "time", "timestamp", "at", "emitted_at")


def record_time(record: Mapping[str, Any]) -> pd.Timestamp:
    """When a record was made: its own time field if any, else the Kafka record time (UTC)."""
    for name in _TIME_FIELDS:
        value = record.get(name)
        if value is not None:
            try:
                if isinstance(value, int | float):
                    return pd.Timestamp(int(value), unit="ms" if value > 1e11 else "s", tz="UTC")
                return (
                    pd.Timestamp(value).tz_convert("UTC")
                    if pd.Timestamp(value).tzinfo
                    else pd.Timestamp(value, tz="UTC")
                )
            except (ValueError, TypeError):
                continue
    return pd.Timestamp(int(record.get("_timestamp_ms", 0)), unit="ms", tz="UTC")


def monitoring_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: ``time`` plus whichever of :data:`FIELDS` the records carry, oldest first."""
    rows = []
    for record in records:
        row: dict[str, Any] = {"time": record_time(record)}
        for column, names in FIELDS.items():
            value = _first(record, names)
            if isinstance(value, Mapping):  # e.g. lag per partition, drift with details
                value = _first(value, ("total", "psi", "value", "score")) if column != "lag" else _sum(value)
            if value is not None:
                row[column] = value
        rows.append(row)
    return pd.DataFrame(rows).sort_values("time").reset_index(drop=True) if rows else pd.DataFrame(columns=["time"])


def latest_totals(frame: pd.DataFrame) -> dict[str, Any]:
    """The deployment's current figures: each worker's newest record, summed (drift: the worst worker).

    Several worker replicas each publish their own record (their own partitions and rate); the latest single
    record would show one replica only.
    """
    if frame.empty:
        return {}
    newest = frame.groupby("worker", dropna=False).tail(1) if "worker" in frame else frame.tail(1)
    out: dict[str, Any] = {"time": frame["time"].max(), "workers": len(newest)}
    for column, how in _COMBINE.items():
        if column in newest and newest[column].notna().any():
            values = pd.to_numeric(newest[column].astype(object).map(_number), errors="coerce").dropna()
            if values.empty:
                continue
            out[column] = float(values.sum() if how == "sum" else values.max() if how == "max" else values.min())
    # Every worker reports its window's counts: the deployment's share is theirs added up, not the worst one's.
    if out.get("events_window"):
        out["dead_letter_share"] = out.get("dead_letters_window", 0.0) / out["events_window"]
    if "dead_letter_alert" in out:
        out["dead_letter_alert"] = bool(out["dead_letter_alert"])
    return out


def dead_letter_reasons(records: Sequence[Mapping[str, Any]], scope: str = "total") -> dict[str, int]:
    """Dead letters per reason code in the newest record of each worker, added up, most frequent first.

    ``scope`` is ``"total"`` (since each worker started) or ``"window"`` (each worker's alert window).
    """
    newest: dict[Any, Mapping[str, Any]] = {}
    for record in sorted(records, key=record_time):
        newest[_first(record, FIELDS["worker"])] = record
    counts: dict[str, int] = {}
    for record in newest.values():
        reasons = _first(record, _REASON_FIELDS[scope])
        if not isinstance(reasons, Mapping):
            continue
        for reason, count in reasons.items():
            if isinstance(count, int | float) and not isinstance(count, bool) and count > 0:
                counts[str(reason)] = counts.get(str(reason), 0) + int(count)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def mix_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame ``time, segment, share`` of the segment mix in each record that has one."""
    rows = []
    for record in records:
        mix = _first(record, _MIX_FIELDS)
        if isinstance(mix, Mapping) and isinstance(mix.get("live"), Mapping):
            mix = mix["live"]  # {"live": {...}, "training": {...}}
        if not isinstance(mix, Mapping) or not mix:
            continue
        counts = {}
        for key, value in mix.items():
            try:
                counts[int(str(key).rsplit(":", 1)[-1])] = float(value)
            except (TypeError, ValueError):
                continue
        total = sum(counts.values())
        if total <= 0:
            continue
        when = record_time(record)
        rows += [(when, segment, value / total) for segment, value in counts.items()]
    return pd.DataFrame(rows, columns=["time", "segment", "share"])


def _first(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value: Any = record
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, bool) else value


def _sum(values: Mapping[str, Any]) -> float | None:
    numbers = [float(v) for v in values.values() if isinstance(v, int | float)]
    return sum(numbers) if numbers else None
