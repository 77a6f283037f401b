"""Daily sales windows and the scheduled forecast refresh.

The windows are tumbling UTC days by event time, total and per segment. They are kept durably by the state
store: every finalized batch adds each event's cents to its day (once per ``event_id``, see
:class:`~segstream.streams.state.base.Finalization`), so a crash or a redelivery never counts a sale twice.

On a schedule, when due (a new model, a new streamed day, or 15 minutes since the last fit), the worker
joins the bundle's stored daily history (``daily_sales.csv``, written by the trainer) with the streamed days
*after* the history's last day (days the history covers are taken from the history, so replaying the
training file does not count those sales twice), forecasts every series with
:func:`segstream.models.forecasting.forecast_all`, publishes one record per forecast row to
``sales-forecasts`` and stores the whole refresh as JSON in Redis (``{prefix}:v2:forecast``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segstream.models.features import DAY_MS
from segstream.models.forecasting import forecast_all
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.outputs import OutputBatch, Producer, dumps, now_iso
from segstream.streams.retry import retry_transient
from segstream.streams.state.base import StateStore

log = logging.getLogger("segstream.worker")

DAILY_SALES_FILE = "daily_sales.csv"  # written by the trainer into every bundle
DEFAULT_HORIZON_DAYS = 28
DEFAULT_MODELS: tuple[str, ...] = ("seasonal_naive", "random_forest")


def bundle_history(bundle_dir: Path) -> pd.DataFrame | None:
    """The bundle's daily sales history (``date, series, sales``), or None when it has none."""
    path = Path(bundle_dir) / DAILY_SALES_FILE
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    frame["sales"] = frame["sales"].astype(float)
    frame["series"] = frame["series"].astype(str)
    return frame[["date", "series", "sales"]]


def streamed_frame(streamed: Mapping[int, Mapping[str, int]]) -> pd.DataFrame:
    """The store's ``{day: {series: cents}}`` as a long ``date, series, sales`` frame (money units)."""
    rows = [
        (pd.Timestamp(int(day) * DAY_MS, unit="ms"), str(series), cents / 100.0)
        for day, by_series in streamed.items()
        for series, cents in by_series.items()
    ]
    frame = pd.DataFrame(rows, columns=["date", "series", "sales"])
    frame["date"] = frame["date"].astype("datetime64[ns]")
    return frame


def merged_daily(history: pd.DataFrame | None, streamed: Mapping[int, Mapping[str, int]]) -> pd.DataFrame:
    """History up to its last day, then the streamed days after it; sorted by series and date."""
    live = streamed_frame(streamed)
    if history is not None and not history.empty:
        live = live[live["date"] > history["date"].max()]
        frames = [history, live] if not live.empty else [history]
        merged = pd.concat(frames, ignore_index=True)
    else:
        merged = live
    return merged.sort_values(["series", "date"]).reset_index(drop=True)


def forecast_rows(daily: pd.DataFrame, horizon: int, models: Sequence[str], generated_at: str) -> list[dict[str, Any]]:
    """Forecast every series; rows are JSON-ready dicts (dates as ``YYYY-MM-DD``)."""
    if daily.empty:
        return []
    frame = forecast_all(daily, horizon, models=models, generated_at=generated_at)
    rows = []
    for rec in frame.to_dict(orient="records"):
        rows.append(
            {
                "series": rec["series"],
                "date": pd.Timestamp(rec["date"]).strftime("%Y-%m-%d"),
                "yhat": float(rec["yhat"]),
                "lower": float(rec["lower"]),
                "upper": float(rec["upper"]),
                "model": rec["model"],
                "generated_at": generated_at,
                "notes": rec.get("notes") if isinstance(rec.get("notes"), str) else None,
            }
        )
    return rows


async def store_forecast(store: StateStore, document: Mapping[str, Any]) -> None:
    """Keep the latest refresh in the store.

    Adapter until the store interface has a method for it: uses ``put_forecast`` when the store has one,
    else writes the documented key of the Redis store, else keeps it on the in-process store.
    """
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    put = getattr(store, "put_forecast", None)
    if put is not None:
        await put(text)
        return
    client = getattr(store, "_redis", None)
    keys = getattr(store, "keys", None)
    if client is not None and keys is not None:
        await client.set(keys.forecast, text)
        return
    store.latest_forecast = text  # type: ignore[attr-defined]


class ForecastRefresher:
    """Refreshes the sales forecast from the bundle history plus the streamed windows."""

    def __init__(
        self,
        store: StateStore,
        producer: Producer,
        topic: str,
        *,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        models: Sequence[str] = DEFAULT_MODELS,
        lease_ms: int | None = None,
    ) -> None:
        self.store = store
        # With a lease, only the worker holding the store's forecast lease refreshes: each refresh is
        # published once however many workers run. None: always refresh (one process).
        self.lease_ms = lease_ms
        self.producer = producer
        self.topic = topic
        self.horizon_days = horizon_days
        self.models = tuple(models)
        self._history: tuple[str, pd.DataFrame | None] | None = None
        self.last: dict[str, Any] | None = None
        self._last_key: tuple[str, int, int] | None = None
        self._last_at = 0.0

    def _history_of(self, model: ActiveModel) -> pd.DataFrame | None:
        if self._history is None or self._history[0] != model.version:
            self._history = (model.version, bundle_history(model.path))
        return self._history[1]

    async def refresh_if_due(self, model: ActiveModel, max_age_s: float = 900.0) -> dict[str, Any] | None:
        """Refresh when the model changed, a new day has streamed in, or the last refresh is ``max_age_s`` old,
        and (with a lease) this worker holds the forecast lease.

        Fitting takes seconds of CPU that the scoring loop would otherwise have, and the forecast only
        changes meaningfully when a day is added, so a busy stream does not refit on every tick.

        Returns:
            The new document, or None when nothing was due.
        """
        if self.lease_ms is not None:
            lease_ms = self.lease_ms
            held = await retry_transient(lambda: self.store.claim_forecast(lease_ms), "claim the forecast lease")
            if not held:
                self._last_key = None  # another worker refreshes; taking over later refreshes at once
                return None
        streamed = await retry_transient(self.store.daily_sales, "read streamed daily sales")
        key = (model.version, max(streamed, default=-1), len(streamed))
        if key == self._last_key and time.monotonic() - self._last_at < max_age_s:
            return None
        return await self.refresh(model, streamed)

    async def refresh(
        self, model: ActiveModel, streamed: Mapping[int, Mapping[str, int]] | None = None
    ) -> dict[str, Any]:
        """Forecast once, publish the rows and store the refresh; returns the stored document."""
        if streamed is None:
            streamed = await retry_transient(self.store.daily_sales, "read streamed daily sales")
        self._last_key = (model.version, max(streamed, default=-1), len(streamed))
        self._last_at = time.monotonic()
        history = self._history_of(model)
        generated_at = now_iso()
        daily = merged_daily(history, streamed)
        # Fitting is CPU work in pandas/scikit-learn: keep it off the event loop.
        rows = await asyncio.get_running_loop().run_in_executor(
            None, forecast_rows, daily, self.horizon_days, self.models, generated_at
        )
        last_day = daily["date"].max() if not daily.empty else None
        document = {
            "generated_at": generated_at,
            "model_version": model.version,
            "horizon_days": self.horizon_days,
            "history_days": int(daily["date"].nunique()) if not daily.empty else 0,
            "streamed_days": len(streamed),
            "last_day": None if last_day is None else pd.Timestamp(last_day).strftime("%Y-%m-%d"),
            "rows": rows,
        }
        out = OutputBatch(self.producer)
        for row in rows:
            await out.send(self.topic, row["series"].encode(), dumps({**row, "model_version": model.version}))
        await out.wait_all()
        await retry_transient(lambda: store_forecast(self.store, document), "store the forecast refresh")
        self.last = document
        log.info("forecast refreshed: %d rows over %d series", len(rows), len({r["series"] for r in rows}))
        return document
