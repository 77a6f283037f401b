"""THE parity test: the streamed state equals the batch recomputation, whatever the delivery order.

A generated history is replayed in shuffled order with 5% of its events sent twice; the worker is killed
with SIGKILL partway and restarted. Afterwards every customer's features in Redis (as of the final
watermark) equal ``batch_features`` over the file exactly, and every stored segment equals batch scoring
with the same bundle, after a final evaluation of every customer at the final watermark
(``segstream rescore``: the worker only re-scores a customer when it has an event or is due for the
inactivity sweep, so without it a segment reflects the watermark at the customer's last evaluation).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle, resolve_current
from segstream.models.customer_state import aggregates_matrix
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, batch_features, features_from_aggregates
from segstream.models.serving import SERVING
from segstream.streams.replay import records_from_frame, replay
from segstream.streams.state import open_store
from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, trained, wait_until


@pytest.mark.parametrize("fold", ["redis", "worker"])  # SEGSTREAM_REDIS_FOLD: in Redis (Lua) or in the worker
def test_parity_after_shuffled_duplicated_replay_and_sigkill(embedded_stack, tmp_path_factory, tmp_path, fold):
    started = time.perf_counter()
    events, models_root = trained(tmp_path_factory.getbasetemp() / "trained", customers=1500, seed=11)
    env = WorkerEnv(embedded_stack, models_root, tmp_path, extra={"SEGSTREAM_REDIS_FOLD": fold})
    env.create_topics(partitions=4)
    client = redis.Redis.from_url(embedded_stack.redis_url)

    records = records_from_frame(events, sort=False)
    unique_ids = [r["event_id"] for r in records]
    keys = [(r["event_id"], r["customer_id"]) for r in records]
    rng = random.Random(5)
    rng.shuffle(records)
    duplicates = rng.sample(records, k=len(records) // 20)
    for dup in duplicates:
        records.insert(rng.randrange(len(records) + 1), dict(dup))
    setup_s = time.perf_counter() - started

    first = env.start_worker()
    try:
        env.wait_http(first)
        t0 = time.perf_counter()
        sent = replay(records, env.kafka, env.topics["transactions"])
        assert sent.sent == len(records)
        wait_until(lambda: done_count(client, env.prefix, keys) >= len(unique_ids) * 0.3, 120,
                   "30% of the events done", first, env.log_text)  # fmt: skip
    finally:
        stop(first, signal.SIGKILL)
    done_at_kill = done_count(client, env.prefix, keys)
    assert done_at_kill < len(unique_ids), "the worker finished before it was killed; nothing was tested"

    second = env.start_worker()
    try:
        wait_until(lambda: done_count(client, env.prefix, keys) == len(unique_ids), 180,
                   "every event done after the restart", second, env.log_text)  # fmt: skip
        processed_s = time.perf_counter() - t0
        metrics = env.metrics()
    finally:
        stop(second)

    result = CliRunner().invoke(cli, ["rescore"], env=env.env())
    assert result.exit_code == 0, result.output

    bundle = load_bundle(resolve_current(models_root), expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING])
    serving = bundle.artifact(SERVING)
    batch = batch_features(events)
    customers = list(batch.index)

    async def read_state():
        store = open_store(embedded_stack.redis_url, prefix=env.prefix)
        try:
            return await store.watermark(), await store.view(customers)
        finally:
            await store.close()

    watermark, views = asyncio.run(read_state())
    assert watermark == batch.attrs["as_of_ms"]
    assert set(views) == set(customers)
    stream_x = features_from_aggregates(aggregates_matrix([views[c].aggregates for c in customers]), watermark)
    batch_x = batch.to_numpy()
    mismatched = [
        (customers[i], FEATURE_NAMES[j]) for i, j in zip(*np.nonzero(stream_x != batch_x), strict=True)
    ]
    assert not mismatched, f"{len(mismatched)} feature values differ, first: {mismatched[:5]}"

    expected_segments = serving.predict_segments(batch_x)
    stored = np.array([views[c].segment.segment for c in customers])
    wrong = [customers[i] for i in np.nonzero(stored != expected_segments)[0]]
    assert not wrong, f"{len(wrong)} segments differ from batch scoring, e.g. {wrong[:5]}"
    assert {views[c].segment.model_version for c in customers} == {bundle.version}

    scored_ids = {r["event_id"] for r in read_topic(env.kafka, env.topics["scored"], timeout=30)}
    assert scored_ids == set(unique_ids), "every event must be scored at least once"
    assert read_topic(env.kafka, env.topics["dead_letters"], timeout=5) == []

    total_s = time.perf_counter() - started
    print(
        f"\nparity: {len(unique_ids)} unique events (+{len(duplicates)} duplicates), {len(customers)} customers; "
        f"killed at {done_at_kill} done; replay {sent.rate:,.0f}/s; replay-to-all-done {processed_s:.1f}s "
        f"({len(unique_ids) / processed_s:,.0f} events/s incl. kill+restart); worker 2 processed "
        f"{metrics['segstream_events_processed_total']:.0f}, skipped {metrics['segstream_duplicates_total']:.0f} "
        f"duplicates; setup {setup_s:.1f}s; test total {total_s:.1f}s"
    )
