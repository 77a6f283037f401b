"""The worker's HTTP endpoints against the in-process store (aiohttp's test server, a real socket)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.monitoring import WorkerStats
from segstream.streams.pipeline import BatchProcessor, PipelineConfig
from segstream.streams.state import MemoryStateStore
from segstream.streams.web import WebContext, build_app
from tests.unit.streams.fakes import FakeProducer, event, holder, records


async def _serve(ctx, calls):
    async with TestClient(TestServer(build_app(ctx))) as client:
        out = []
        for path in calls:
            resp = await client.get(path)
            out.append((resp.status, await (resp.json() if "json" in resp.content_type else resp.text())))
        return out


def test_health_metrics_and_customer():
    async def go():
        store, stats, models = MemoryStateStore(), WorkerStats(), holder()
        proc = BatchProcessor(store, FakeProducer(), models, PipelineConfig(), stats)
        await proc.process(records(event("e1", "alice", 0, 10.0), event("e1", "alice", 0, 10.0), b"junk"))
        ctx = WebContext(store, models, stats, lambda: {"0": 7})
        return await _serve(ctx, ["/health", "/metrics", "/customers/alice", "/customers/nobody", "/customers/a%20b"])

    (hs, health), (ms, metrics), (cs, doc), (ns, _), (bs, bad) = asyncio.run(go())
    assert hs == 200 and health["status"] == "ok" and health["model_version"] == "v-test"
    assert ms == 200
    assert "segstream_events_processed_total 1" in metrics
    assert "segstream_dead_letters_total 1" in metrics and "segstream_duplicates_total 1" in metrics
    assert 'segstream_consumer_lag{partition="0"} 7' in metrics and "segstream_consumer_lag_total 7" in metrics
    for stage in ("parse", "apply", "score", "send", "deliver", "finalize"):
        assert f'segstream_stage_seconds_total{{stage="{stage}"}} ' in metrics, stage
    for generation in (0, 1, 2):
        assert f'segstream_gc_collections_total{{generation="{generation}"}} ' in metrics
        assert f'segstream_gc_seconds_total{{generation="{generation}"}} ' in metrics
    assert "segstream_gc_longest_seconds " in metrics
    assert cs == 200
    assert doc["frequency"] == 1.0 and doc["monetary"] == 10.0 and doc["segment"] == 0
    assert doc["segment_name"] == "Active" and doc["first_purchase_at"] == doc["last_purchase_at"]
    assert doc["recent_changes"][0]["segment_name"] == "Active"
    assert ns == 404 and bs == 400 and bad == {"error": "invalid customer id"}


def test_health_is_503_without_a_model():
    ctx = WebContext(MemoryStateStore(), ModelHolder("/nonexistent"), WorkerStats())
    [(status, body)] = asyncio.run(_serve(ctx, ["/health"]))
    assert status == 503 and "no model bundle loaded" in body["problems"]


class _DownStore(MemoryStateStore):
    async def watermark(self):
        raise ConnectionError("Connection refused")

    async def ping(self):
        raise ConnectionError("Connection refused")


def test_store_down_gives_503_not_500():
    ctx = WebContext(_DownStore(), holder(), WorkerStats())
    (hs, health), (cs, doc) = asyncio.run(_serve(ctx, ["/health", "/customers/alice"]))
    assert hs == 503 and "state store" in health["problems"][0]
    assert cs == 503 and "unavailable" in doc["error"]


def test_customers_need_the_bearer_token_when_one_is_set():
    async def go():
        store, stats, models = MemoryStateStore(), WorkerStats(), holder()
        proc = BatchProcessor(store, FakeProducer(), models, PipelineConfig(), stats)
        await proc.process(records(event("e1", "alice", 0, 10.0)))
        ctx = WebContext(store, models, stats, customer_token="s3cret-token")
        async with TestClient(TestServer(build_app(ctx))) as client:
            out = []
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"},
                            {"Authorization": "Bearer s3cret-token"}):  # fmt: skip
                resp = await client.get("/customers/alice", headers=headers)
                out.append((resp.status, resp.headers.get("WWW-Authenticate")))
            out.append(((await client.get("/health")).status, None))
            out.append(((await client.get("/metrics")).status, None))
            return out

    denied, wrong, basic, allowed, health, metrics = asyncio.run(go())
    assert denied == wrong == basic == (401, 'Bearer realm="segstream"')
    assert allowed[0] == 200 and health[0] == 200 and metrics[0] == 200  # probes and scrapers stay open
