"""The dashboard with live state: a real Redis filled by the worker's own store, real topics on the broker.

The state comes from :mod:`tests.integration.dashboard_live_state` (written through the worker's own
store). Every page runs in AppTest, and the database and topics must be exactly as before: the app only
reads. Live features as of the watermark must equal the bundle's batch features for the same file.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from segstream.models.features import FEATURE_NAMES
from segstream.settings import Settings
from segstream.viz.bundle_tables import BundleTables
from tests.integration.dashboard_live_state import live_env, topics
from tests.unit.dashboard.fixtures import PAGES, dashboard_bundle, fresh_streamlit_caches, make_app, open_page, texts

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_streamlit_caches")]
__all__ = ["dashboard_bundle", "fresh_streamlit_caches", "live_env", "topics"]
READ_COMMANDS = {"get", "hget", "hgetall", "lrange", "scan", "ping", "client", "hello", "select", "info",
                 "echo", "dbsize", "type", "ttl", "pttl", "dump", "keys", "exists", "command"}  # fmt: skip


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
