"""Daily sales windows joined with the bundle history, and the forecast refresh."""

from __future__ import annotations

import asyncio
import json

import pandas as pd

from segstream.models.features import DAY_MS
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.pipeline import BatchProcessor, PipelineConfig
from segstream.streams.state import MemoryStateStore
from segstream.streams.windows import ForecastRefresher, bundle_history, merged_daily
from tests.unit.streams.fakes import T0, FakeProducer, event, holder, make_bundle, records, serving


def history_csv(days: int) -> bytes:
    dates = pd.date_range(pd.Timestamp(T0, unit="ms"), periods=days, freq="D")
    rows = [f"{d.date()},total,{100.0 + i}" for i, d in enumerate(dates)]
    return ("date,series,sales\n" + "\n".join(rows) + "\n").encode()


def test_streamed_days_after_the_history_are_appended_and_overlapping_days_are_not_counted_twice():
    history = pd.read_csv(pd.io.common.BytesIO(history_csv(10)))
    history["date"] = pd.to_datetime(history["date"]).astype("datetime64[ns]")
    day0 = T0 // DAY_MS
    streamed = {day0 + 9: {"total": 99_999}, day0 + 10: {"total": 12_345, "segment:1": 12_345}}
    merged = merged_daily(history, streamed)
    total = merged[merged.series == "total"].set_index("date")["sales"]
    assert len(total) == 11
    assert total.iloc[9] == 109.0  # from the history, not the stream
    assert total.iloc[10] == 123.45
    assert merged[merged.series == "segment:1"]["sales"].tolist() == [123.45]


def test_windows_are_kept_per_day_and_segment_by_the_pipeline():
    async def go():
        store = MemoryStateStore()
        proc = BatchProcessor(store, FakeProducer(), holder(), PipelineConfig())
        await proc.process(
            records(event("e1", "a", 0.1, 10.0), event("e2", "b", 0.2, 5.0), event("e3", "a", 1.5, -2.5))
        )
        await proc.process(records(event("e1", "a", 0.1, 10.0)))  # a duplicate never counts twice
        return await store.daily_sales()

    day0 = T0 // DAY_MS
    assert asyncio.run(go()) == {day0: {"total": 1500, "segment:0": 1500}, day0 + 1: {"total": -250, "segment:0": -250}}


def test_refresh_publishes_rows_and_stores_the_document(tmp_path):
    bundle = make_bundle(tmp_path, extra_files={"daily_sales.csv": history_csv(60)})
    assert bundle_history(bundle) is not None
    model = ActiveModel("v1", bundle, serving())

    async def go():
        store, producer = MemoryStateStore(), FakeProducer()
        proc = BatchProcessor(store, producer, holder(), PipelineConfig())
        await proc.process(records(event("e1", "a", 61, 10.0), event("e2", "a", 62, 20.0)))
        refresher = ForecastRefresher(store, producer, "sales-forecasts", horizon_days=7, models=["seasonal_naive"])
        return await refresher.refresh(model), store, producer

    doc, store, producer = asyncio.run(go())
    assert doc["model_version"] == "v1" and doc["last_day"] == str(
        (pd.Timestamp(T0, unit="ms") + pd.Timedelta(days=62)).date()
    )
    series = {r["series"] for r in doc["rows"]}
    assert series == {"total", "segment:0"}
    assert len([r for r in doc["rows"] if r["series"] == "total"]) == 7
    assert all(r["lower"] <= r["yhat"] <= r["upper"] for r in doc["rows"])
    published = producer.values("sales-forecasts")
    assert len(published) == len(doc["rows"]) and published[0]["model_version"] == "v1"
    assert json.loads(store.latest_forecast) == doc


def test_refresh_if_due_refits_only_for_a_new_day_or_a_new_model(tmp_path):
    bundle = make_bundle(tmp_path, extra_files={"daily_sales.csv": history_csv(30)})
    model = ActiveModel("v1", bundle, serving())

    async def go():
        store, producer = MemoryStateStore(), FakeProducer()
        proc = BatchProcessor(store, producer, holder(), PipelineConfig())
        refresher = ForecastRefresher(store, producer, "f", horizon_days=3, models=["seasonal_naive"])
        outcomes = [await refresher.refresh_if_due(model)]
        await proc.process(records(event("e1", "a", 40, 10.0)))
        outcomes.append(await refresher.refresh_if_due(model))
        await proc.process(records(event("e2", "a", 40.5, 10.0)))  # same day: not due
        outcomes.append(await refresher.refresh_if_due(model))
        outcomes.append(await refresher.refresh_if_due(ActiveModel("v2", bundle, serving())))
        outcomes.append(await refresher.refresh_if_due(ActiveModel("v2", bundle, serving()), max_age_s=0))
        return outcomes

    first, new_day, same_day, new_model, stale = asyncio.run(go())
    assert first is not None and new_day is not None and same_day is None
    assert new_model is not None and new_model["model_version"] == "v2" and stale is not None


def test_a_worker_without_the_forecast_lease_publishes_nothing_and_refreshes_once_it_holds_it(tmp_path):
    bundle = make_bundle(tmp_path, extra_files={"daily_sales.csv": history_csv(30)})
    model = ActiveModel("v1", bundle, serving())

    class Shared(MemoryStateStore):
        """A store whose forecast lease another worker holds until ``held`` says otherwise."""

        held = False
        asked: list[int] = []

        async def claim_forecast(self, lease_ms: int) -> bool:
            self.asked.append(lease_ms)
            return self.held

    async def go():
        store, producer = Shared(), FakeProducer()
        refresher = ForecastRefresher(store, producer, "f", horizon_days=3, models=["seasonal_naive"], lease_ms=180_000)
        outcomes = [await refresher.refresh_if_due(model)]
        published = len(producer.values("f"))
        store.held = True  # the holder died and its lease ran out
        outcomes.append(await refresher.refresh_if_due(model))
        return outcomes, published, producer, store

    (standing_by, took_over), published_before, producer, store = asyncio.run(go())
    assert standing_by is None and published_before == 0
    assert took_over is not None and len(producer.values("f")) == len(took_over["rows"]) > 0
    assert store.asked == [180_000, 180_000]
