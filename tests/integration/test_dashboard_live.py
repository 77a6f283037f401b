"""The dashboard with live state: a real Redis filled by the worker's own store, real topics on the broker.

Redis is written through ``RedisStateStore.apply``/``finalize`` (the worker's writer) with every event of the
bundle's training file, so the live features as of the watermark must equal the bundle's batch features.
Monitoring and segment-change records go to fresh topics in the worker's formats. Then every page runs in
AppTest, and the database and topics must be exactly as before: the app only reads.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from segstream.cli.data import load_and_clean
from segstream.dashboard.data import load_models
from segstream.models.events import parse_event
from segstream.models.features import FEATURE_NAMES
from segstream.settings import Settings
from segstream.streams.state import Finalization, RedisStateStore, SegmentChange, SegmentRecord
from segstream.viz.bundle_tables import BundleTables
from tests.unit.dashboard.fixtures import PAGES, dashboard_bundle, fresh_streamlit_caches, make_app, open_page, texts

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_streamlit_caches")]
__all__ = ["dashboard_bundle", "fresh_streamlit_caches"]

PREFIX = "dashtest"
READ_COMMANDS = {"get", "hget", "hgetall", "lrange", "scan", "ping", "client", "hello", "select", "info",
                 "echo", "dbsize", "type", "ttl", "pttl", "dump", "keys", "exists", "command"}  # fmt: skip


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


def _snapshot(client) -> dict:
    """Every key with its serialized value and whether it expires: any write changes this."""
    return {key: (client.dump(key), client.ttl(key) > 0) for key in client.scan_iter(count=1000)}


def _topic_ends(stack, topics: dict[str, str]) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**stack.settings.kafka.kafka_python_kwargs())
    try:
        return consumer.end_offsets([TopicPartition(t, 0) for t in topics.values()])
    finally:
        consumer.close()


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
    redis_client.set(f"{PREFIX}:v1:forecast", json.dumps(forecast))  # the worker's refresh, as it stores it

    producer = KafkaProducer(**embedded_stack.settings.kafka.kafka_python_kwargs())
    stats = WorkerStats(processed=len(events), dead_letters=3, duplicates=5, mix=SegmentMix())
    for i, cid in enumerate(sorted({e.customer_id for e in events})):
        stats.mix.observe(cid, i % len(filled["names"]))
    for rate in (1500.0, 2500.0, 2000.0):
        record = monitoring_record(stats, model_version="v", training_mix={s: 1.0 for s in filled["names"]},
                                   lag={"0": 42}, watermark_ms=filled["watermark"], events_per_s=rate,
                                   worker_id="w1")  # fmt: skip
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


def test_every_page_with_live_state_reads_it_and_writes_nothing(live_env, redis_client, dashboard_bundle,
                                                                 embedded_stack, topics, monkeypatch):  # fmt: skip
    before = _snapshot(redis_client)
    ends_before = _topic_ends(embedded_stack, topics)
    commands: list[str] = []
    stop = threading.Event()

    def watch():
        with redis_client.monitor() as monitor:
            for entry in monitor.listen():
                if "dashboard-test-stop" in entry["command"]:
                    return
                commands.append(entry["command"].split(" ", 1)[0].lower())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    shown, charts = {}, {}
    for page in PAGES:
        at = open_page(make_app(monkeypatch, dashboard_bundle, offline=False), page)
        if page == "customer":
            at.text_input(key="customer_id").input(live_env["mover"]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        shown[page] = texts(at)
        charts[page] = len(at.get("plotly_chart"))
        if page == "live":
            changes = at.dataframe[0].value
        assert "Redis: live state" in shown[page]
    import redis

    redis.Redis.from_url(embedded_stack.redis_url).echo("dashboard-test-stop")
    watcher.join(timeout=10)
    stop.set()

    assert _snapshot(redis_client) == before, "the dashboard changed Redis"
    assert commands and set(commands) <= READ_COMMANDS, sorted(set(commands) - READ_COMMANDS)
    assert _topic_ends(embedded_stack, topics) == ends_before, "the dashboard produced to a topic"

    live = shown["live"]
    assert "2,000" in live  # events/s of the newest monitoring record
    assert "Monitoring (events/s" not in live and "Segment changes: not available" not in live
    assert "Live segment mix: not available" not in live and "Streamed daily sales: not available" not in live
    assert "Live state from Redis" in shown["customer"]
    assert charts["live"] >= 4  # mix over time, live vs training, throughput/lag/drift, streamed sales
    assert list(changes["customer"]) == [live_env["mover"]] and list(changes["cause"]) == ["inactivity"]
    assert "Worker forecast refresh: not available" not in shown["forecasts"]
    assert charts["forecasts"] == 3  # forecast, backtest errors, the worker's refresh


def test_live_features_equal_the_bundles_batch_features(live_env, dashboard_bundle, monkeypatch):
    from segstream.dashboard.live_redis import LiveReader

    settings = Settings.load()
    reader = LiveReader.connect(settings.redis)
    customers = BundleTables.open(dashboard_bundle).customers.set_index("customer_id")
    assert reader.watermark_ms() == BundleTables.open(dashboard_bundle).manifest.info["as_of_ms"]
    for cid in customers.index[:60]:
        live = reader.customer(cid)
        assert live is not None
        expected = customers.loc[cid, list(FEATURE_NAMES)].to_numpy(dtype=float)
        np.testing.assert_allclose([live.features[f] for f in FEATURE_NAMES], expected, rtol=1e-12, atol=1e-9)
    mover = reader.customer(live_env["mover"])
    assert mover.segment == live_env["mover_segment"]
    assert mover.history[0]["cause"] == "inactivity"
    assert reader.customer("nobody") is None
    assert sum(reader.segment_counts().values()) == len(customers)
    sales = reader.daily_sales()
    assert set(sales["series"]) >= {"total"} and sales.loc[sales["series"] == "total", "sales"].sum() == pytest.approx(
        sum(e.amount_cents for e in live_env["events"]) / 100
    )
    reader.redis.close()


def test_customer_page_shows_live_history_and_an_unknown_id_everywhere(live_env, dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle, offline=False), "customer")
    at.text_input(key="customer_id").input(live_env["mover"]).run()
    assert not at.exception and not at.error
    history = at.dataframe[1].value
    assert list(history["cause"])[0] == "inactivity"
    at.text_input(key="customer_id").input("nobody-here").run()
    assert [e.value for e in at.error] == [
        "No customer with id `nobody-here` in the live state or bundle (400 customers)."
    ]


def test_unreachable_redis_and_kafka_degrade_to_the_bundle(dashboard_bundle, monkeypatch):
    from tests.integration.conftest import free_port

    monkeypatch.setenv("SEGSTREAM_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    at = open_page(make_app(monkeypatch, dashboard_bundle, offline=False), "live")
    assert not at.exception and not at.error
    shown = texts(at)
    assert "Redis: not connected" in shown and "is not reachable" in shown
    assert "Monitoring (events/s, lag, dead letters, drift): not available" in shown
