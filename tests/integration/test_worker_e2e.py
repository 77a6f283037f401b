"""One live worker (a subprocess) on the session broker and Redis: replay, bad input, HTTP, forecasts,
monitoring, the inactivity sweep and hot reload. Tests run in file order and share the worker."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse

import pytest
import redis
from aiokafka.partitioner import DefaultPartitioner

from segstream.models.bundle import current_version, promote
from segstream.models.state_keys import KeySpace
from segstream.streams.replay import records_from_frame, replay
from tests.integration.worker_support import WorkerEnv, read_placed, read_topic, stop, trained, wait_until

T0 = 1_735_689_600_000  # 2025-01-01


@pytest.fixture(scope="module")
def live(embedded_stack, tmp_path_factory):
    events, models_root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=3)
    workdir = tmp_path_factory.mktemp("worker-e2e")
    env = WorkerEnv(embedded_stack, models_root, workdir, extra={
        "SEGSTREAM_WORKER_MONITORING_INTERVAL_S": "1",
        "SEGSTREAM_WORKER_FORECAST_REFRESH_INTERVAL_S": "2",
        "SEGSTREAM_WORKER_BATCH_SIZE": "500",
    })  # fmt: skip
    env.create_topics(partitions=2)
    proc = env.start_worker()
    env.wait_http(proc)
    yield env, proc, events
    stop(proc)


def bad_messages() -> list[tuple[bytes | None, str]]:
    def ev(**fields):
        base = {"event_id": "bad", "customer_id": "C-bad", "timestamp": T0, "amount": 1.0}
        return json.dumps({**base, **fields}).encode()

    return [
        (b"definitely not json", "not valid JSON"),
        (b"\x00\xff\xfe", "not valid JSON"),
        (b'"a string"', "not a JSON object"),
        (json.dumps({"customer_id": "C1", "timestamp": T0, "amount": 1}).encode(), "missing field 'event_id'"),
        (ev(event_id="b1", customer_id=None), "missing field 'customer_id'"),
        (ev(event_id="b2", amount="12.50"), "field 'amount': expected a number"),
        (ev(event_id="b3", timestamp="last tuesday"), "field 'timestamp'"),
        (ev(event_id="b4").replace(b'"amount": 1.0', b'"amount": NaN'), "not a finite number"),
        (ev(event_id="b5").replace(b'"amount": 1.0', b'"amount": -Infinity'), "not a finite number"),
        (ev(event_id="b6", pad="x" * 100_000), "payload too large"),
        (ev(event_id="b7", customer_id="has space"), "field 'customer_id'"),
    ]


def test_replay_scores_every_event_or_dead_letters_it(live):
    env, proc, events = live
    some = events[events["customer_id"].isin(sorted(events["customer_id"].unique())[:300])]
    records = records_from_frame(some)
    bad = bad_messages()
    pairs = []
    step = max(len(records) // len(bad), 1)
    for i, rec in enumerate(records):
        if i % step == 0 and i // step < len(bad):
            pairs.append((b"bad-key", bad[i // step][0]))
        pairs.append((rec["customer_id"].encode(), json.dumps(rec).encode()))
    replay([], env.kafka, env.topics["transactions"], raw_values=pairs)

    wanted = len(records) + len(bad)
    wait_until(lambda: (lambda m: m["segstream_events_processed_total"] + m["segstream_dead_letters_total"])(
        env.metrics()) >= wanted, 120, "all events processed", proc, env.log_text)  # fmt: skip

    scored = read_topic(env.kafka, env.topics["scored"])
    assert sorted(r["event_id"] for r in scored) == sorted(r["event_id"] for r in records)
    sample = scored[0]
    assert {"segment", "segment_name", "model_version", "scored_at", "amount", "timestamp"} <= set(sample)
    dead = read_topic(env.kafka, env.topics["dead_letters"])
    assert len(dead) == len(bad)
    reasons = sorted(d["error"] for d in dead)
    for _, expected in bad:
        assert any(expected in r for r in reasons), (expected, reasons)
    for d in dead:
        assert d["topic"] == env.topics["transactions"] and isinstance(d["offset"], int)
        assert d["partition"] in (0, 1) and d["key"] == "bad-key"

    # Outputs go out as per-partition record batches: each must sit where aiokafka's default partitioner
    # puts its key (the customer id), as if it had been sent one by one.
    for topic in ("scored", "segment_changes"):
        placed = read_placed(env.kafka, env.topics[topic])
        assert placed
        for partition, key, value in placed:
            assert key == value["customer_id"].encode()
            assert partition == DefaultPartitioner()(key, [0, 1], [0, 1])

    changes = read_topic(env.kafka, env.topics["segment_changes"])
    firsts = {c["customer_id"] for c in changes if c["previous_segment"] is None}
    assert firsts == set(some["customer_id"])
    assert {c["cause"] for c in changes} <= {"purchase", "inactivity"}
    assert all(len(c["features"]) == 17 and c["model_version"] for c in changes)


def test_inactivity_sweep_emits_changes_with_no_new_event(live):
    env, proc, _ = live
    wait_until(lambda: any(c["cause"] == "inactivity" for c in read_topic(env.kafka, env.topics["segment_changes"])),
               30, "an inactivity change", proc, env.log_text)  # fmt: skip
    change = next(c for c in read_topic(env.kafka, env.topics["segment_changes"]) if c["cause"] == "inactivity")
    assert change["event_id"] is None and change["previous_segment"] != change["segment"]


def test_http_health_metrics_and_customer(live):
    env, _, events = live
    status, health = env.http("/health")
    assert status == 200 and health["status"] == "ok" and health["model_version"] == current_version(env.models_root)
    metrics = env.metrics()
    assert metrics["segstream_events_processed_total"] > 0 and metrics["segstream_dead_letters_total"] == 11
    assert "segstream_duplicates_total" in metrics and "segstream_consumer_lag_total" in metrics
    cid = sorted(events["customer_id"].unique())[0]
    status, doc = env.http(f"/customers/{cid}")
    assert status == 200
    assert {"frequency", "monetary", "first_purchase_at", "last_purchase_at", "segment", "segment_name"} <= set(doc)
    assert doc["frequency"] == float((events[events.customer_id == cid].amount >= 0).sum())
    assert doc["recent_changes"] and doc["segment_name"]
    assert env.http("/customers/" + urllib.parse.quote("bad id"))[0] == 400
    assert env.http("/customers/nobody-at-all")[0] == 404


def test_forecast_refresh_and_monitoring_are_published(live):
    env, proc, _ = live
    client = redis.Redis.from_url(env.stack.redis_url)
    key = KeySpace(env.prefix).forecast
    wait_until(lambda: client.get(key) is not None, 60, "a stored forecast", proc, env.log_text)
    stored = json.loads(client.get(key))
    assert stored["rows"] and {"series", "date", "yhat", "lower", "upper", "model", "generated_at"} <= set(
        stored["rows"][0]
    )
    assert "total" in {r["series"] for r in stored["rows"]}
    published = read_topic(env.kafka, env.topics["sales_forecasts"])
    assert published and published[0]["model_version"] == stored["model_version"]
    monitoring = read_topic(env.kafka, env.topics["monitoring"])
    latest = monitoring[-1]
    assert {"events_per_s", "processed", "dead_letters", "duplicates_skipped", "consumer_lag", "drift_psi",
            "segment_mix"} <= set(latest)  # fmt: skip
    assert latest["processed"] > 0 and latest["drift_psi"] is not None


def test_hot_reload_swaps_a_good_bundle_and_refuses_a_broken_one(live, tmp_path):
    from segstream.trainer.pipeline import TrainOptions, train_bundle

    env, proc, events = live
    old = current_version(env.models_root)
    new_dir = env.models_root / "second"
    if not new_dir.exists():
        train_bundle(events, new_dir, options=TrainOptions(k_range=range(3, 6), seed=99))
    new = promote(new_dir, env.models_root).version
    assert new != old
    wait_until(lambda: f'segstream_model_info{{version="{new}"}} 1' in env.http("/metrics")[1], 30,
               "the new bundle", proc, env.log_text)  # fmt: skip
    replay([{"event_id": "after-swap", "customer_id": "C-swap", "timestamp": T0, "amount": 5.0}], env.kafka,
           env.topics["transactions"])  # fmt: skip
    wait_until(lambda: any(r["event_id"] == "after-swap" for r in read_topic(env.kafka, env.topics["scored"])), 30,
               "the event after the swap", proc, env.log_text)  # fmt: skip
    scored = next(r for r in read_topic(env.kafka, env.topics["scored"]) if r["event_id"] == "after-swap")
    assert scored["model_version"] == new

    # A broken bundle: right manifest, tampered model file; pointed at directly (promote would refuse it).
    broken = env.models_root / "broken"
    shutil.copytree(new_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["version"] = "broken-" + str(time.time_ns())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / "serving.joblib").write_bytes(b"not a pickle at all")
    tmp_link = env.models_root / "current.tmp"
    os.symlink("broken", tmp_link)
    os.replace(tmp_link, env.models_root / "current")
    try:
        wait_until(lambda: "refused model bundle" in env.log_text(), 30, "the refusal", proc, env.log_text)
        replay([{"event_id": "after-broken", "customer_id": "C-swap", "timestamp": T0 + 1, "amount": 5.0}],
               env.kafka, env.topics["transactions"])  # fmt: skip
        wait_until(lambda: any(r["event_id"] == "after-broken" for r in read_topic(env.kafka, env.topics["scored"])),
                   30, "the event after the broken bundle", proc, env.log_text)  # fmt: skip
        scored = next(r for r in read_topic(env.kafka, env.topics["scored"]) if r["event_id"] == "after-broken")
        assert scored["model_version"] == new
        assert env.http("/health")[0] == 200
    finally:
        promote(new_dir, env.models_root)
