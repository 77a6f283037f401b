"""Live state for the dashboard tests: Redis filled by the worker's own store, worker-format topic records.

Redis is written through ``RedisStateStore.apply``/``finalize`` (the worker's writer) with every event of the
bundle's training file, so the live features as of the watermark equal the bundle's batch features; monitoring
and segment-change records go to fresh topics in the worker's formats; the forecast refresh is SET the way
the worker stores it. ``live_env`` also points the ``SEGSTREAM_*`` settings at all of it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from segstream.cli.data import load_and_clean
from segstream.dashboard.data import load_models
from segstream.models.events import parse_event
from segstream.models.state_keys import KeySpace
from segstream.settings import Settings
from segstream.streams.state import Finalization, RedisStateStore, SegmentChange, SegmentRecord
from segstream.viz.bundle_tables import BundleTables

PREFIX = "dashtest"


async def _fill(url: str, bundle: Path, events: list) -> dict:
    """Fold every event in and record each customer's segment (the worker's two steps per batch)."""
    store = RedisStateStore.from_url(url, prefix=PREFIX)
    models = load_models(bundle, Settings.load())
    tables = BundleTables.open(bundle)
    segment_of = dict(zip(tables.customers["customer_id"], tables.customers["segment"], strict=True))
    for start in range(0, len(events), 1000):
        batch = events[start : start + 1000]
        await store.apply(batch)
        sales = [(e.event_id, e.ts_ms // 86_400_000, int(segment_of[e.customer_id]), e.amount_cents) for e in batch]
        await store.finalize(
            Finalization(segments={}, changes=[], sales=sales, done_event_ids=[e.event_id for e in batch])
        )
    watermark = await store.watermark()
    ids = sorted(segment_of)
    views = await store.view(ids)
    changes, records = [], {}
    for cid in ids:
        seg = int(segment_of[cid])
        records[cid] = SegmentRecord(segment=seg, model_version=tables.manifest.version, scored_as_of_ms=watermark)
        changes.append(SegmentChange(cid, None, seg, tables.manifest.version, views[cid].aggregates["last_ts"],
                                     "purchase", f"evt-{cid}"))  # fmt: skip
    mover = ids[0]
    other = next(s for s in models.names if s != segment_of[mover])
    changes.append(SegmentChange(mover, int(segment_of[mover]), other, tables.manifest.version, watermark,
                                 "inactivity", None))  # fmt: skip
    records[mover] = SegmentRecord(segment=other, model_version=tables.manifest.version, scored_as_of_ms=watermark)
    await store.finalize(Finalization(segments=records, changes=changes, sales=[], done_event_ids=[]))
    await store.close()
    return {"watermark": watermark, "mover": mover, "mover_segment": other, "names": models.names}


@pytest.fixture(scope="module")
def topics(embedded_stack):
    from segstream.streams.topics import ensure_topics, wait_for_topics

    suffix = uuid.uuid4().hex[:8]
    names = {"monitoring": f"dash-monitoring-{suffix}", "segment_changes": f"dash-changes-{suffix}",
             "sales_forecasts": f"dash-forecasts-{suffix}"}  # fmt: skip
    ensure_topics(embedded_stack.settings.kafka, list(names.values()), partitions=1)
    wait_for_topics(embedded_stack.settings.kafka, list(names.values()), timeout=10)
    return names


@pytest.fixture
def live_env(embedded_stack, redis_client, topics, dashboard_bundle, monkeypatch):
    """Redis filled through the worker's store, monitoring and change records on their topics, env set."""
    from kafka import KafkaProducer

    from segstream.streams.monitoring import SegmentMix, WorkerStats, monitoring_record
    from segstream.streams.outputs import change_payload

    data = dashboard_bundle.parent / "events.csv"
    frame, _ = load_and_clean(str(data), None, None, echo=False)
    events = [
        parse_event(json.dumps({"event_id": r.event_id, "customer_id": r.customer_id,
                                "timestamp": r.timestamp.isoformat(), "amount": r.amount}))
        for r in frame.itertuples()
    ]  # fmt: skip
    filled = asyncio.run(_fill(embedded_stack.redis_url, dashboard_bundle, events))
    forecast = {"generated_at": "2026-01-01T00:00:00Z", "model_version": "v",
                "rows": [{"series": "total", "date": f"2026-01-{d:02d}", "yhat": 1000.0 + d, "lower": 800.0,
                          "upper": 1200.0, "model": "prophet"} for d in range(1, 15)]}  # fmt: skip
    redis_client.set(KeySpace(PREFIX).forecast, json.dumps(forecast))  # the worker's refresh, as it stores it

    producer = KafkaProducer(**embedded_stack.settings.kafka.kafka_python_kwargs())
    stats = WorkerStats(processed=len(events), dead_letters=3, duplicates=5, mix=SegmentMix())
    ids = sorted({e.customer_id for e in events})
    training = BundleTables.open(dashboard_bundle).customers["segment"].value_counts(normalize=True).to_dict()
    segment_of = dict(zip(BundleTables.open(dashboard_bundle).customers["customer_id"],
                          BundleTables.open(dashboard_bundle).customers["segment"], strict=True))  # fmt: skip
    rates = [1200.0, 1800.0, 2600.0, 2400.0, 2100.0, 2000.0]
    for step, rate in enumerate(rates):
        # Customers arrive over time, so the live mix drifts towards the training mix record by record.
        for cid in ids[: (step + 1) * len(ids) // len(rates)]:
            stats.mix.observe(cid, int(segment_of[cid]))
        record = monitoring_record(stats, model_version="v", training_mix=training, lag={"0": 40 * (len(rates) - step)},
                                   watermark_ms=filled["watermark"], events_per_s=rate, worker_id="w1")  # fmt: skip
        record["generated_at"] = f"2026-01-01T00:{step:02d}:00Z"
        producer.send(topics["monitoring"], json.dumps(record).encode())
    change = SegmentChange(filled["mover"], None, filled["mover_segment"], "v", filled["watermark"], "inactivity", None)
    producer.send(topics["segment_changes"], change_payload(change, filled["names"]))
    producer.flush()
    producer.close()

    monkeypatch.setenv("SEGSTREAM_REDIS_URL", embedded_stack.redis_url)
    monkeypatch.setenv("SEGSTREAM_REDIS_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", embedded_stack.kafka_bootstrap)
    for name, topic in topics.items():
        monkeypatch.setenv(f"SEGSTREAM_TOPIC_{name.upper()}", topic)
    return {**filled, "events": events}
