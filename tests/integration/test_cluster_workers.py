"""Workers on a real Redis Cluster (3 masters, a replica each): parity survives a SIGKILLed worker and a
master failing over to its replica mid-replay; and however many workers run, the inactivity sweep
evaluates each due customer once.
"""

from __future__ import annotations

import collections
import random
import signal
import time

import pytest

from segstream.redis_clients import sync_client
from segstream.streams.replay import records_from_frame, replay
from tests.integration.parity_support import check_parity
from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, trained, wait_until


def _envs(embedded_stack, root, workdir, n: int, extra: dict[str, str]) -> list[WorkerEnv]:
    """``n`` workers of one deployment: the same topics, group and prefix, each its own HTTP port."""
    first = WorkerEnv(embedded_stack, root, workdir, extra=extra)
    return [first] + [WorkerEnv(embedded_stack, root, workdir, extra=extra, tag=first.tag) for _ in range(n - 1)]


@pytest.mark.parametrize("fold", ["redis", "worker"])
def test_two_workers_on_a_cluster_keep_parity_through_a_sigkill_and_a_failover(
    embedded_stack, redis_cluster, tmp_path_factory, tmp_path, fold
):
    events, root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=7)
    extra = {"SEGSTREAM_REDIS_URL": redis_cluster.url, "SEGSTREAM_REDIS_FOLD": fold}
    a, b = _envs(embedded_stack, root, tmp_path, 2, extra)
    a.create_topics(partitions=8)
    client = sync_client(redis_cluster.url)
    records = records_from_frame(events, sort=False)
    keys = [(r["event_id"], r["customer_id"]) for r in records]
    rng = random.Random(3)
    rng.shuffle(records)
    for dup in rng.sample(records, k=len(records) // 20):
        records.insert(rng.randrange(len(records) + 1), dict(dup))

    first, other = a.start_worker("a"), b.start_worker("b")
    restarted = None
    try:
        a.wait_http(first)
        b.wait_http(other)
        replay(records, a.kafka, a.topics["transactions"])
        wait_until(lambda: done_count(client, a.prefix, keys) >= len(keys) * 0.25, 180, "25% of the events done",
                   first, lambda: a.log_text("a"))  # fmt: skip
        stop(first, signal.SIGKILL)
        done_at_kill = done_count(client, a.prefix, keys)
        # A master hands over to its replica while the surviving worker goes on writing to it.
        promoted = redis_cluster.failover(redis_cluster.masters()[0])
        restarted = a.start_worker("a2")
        wait_until(lambda: done_count(client, a.prefix, keys) == len(keys), 300, "every event done",
                   other, lambda: b.log_text("b"))  # fmt: skip
    finally:
        for proc in (first, other, restarted):
            if proc is not None:
                stop(proc)
    assert done_at_kill < len(keys), "everything was done before the kill: nothing was tested"
    assert promoted in redis_cluster.masters()
    check_parity(redis_cluster.url, a, events, root)
    client.close()


@pytest.mark.parametrize("workers", [3])
def test_three_workers_sweep_each_due_customer_once(embedded_stack, redis_client, tmp_path_factory, tmp_path,
                                                    workers):  # fmt: skip
    """With every customer due (a 1-day threshold over a year of history), three workers sweep: each
    inactivity change is emitted once (distinct change ids), and one worker did all the evaluating."""
    events, root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=7)
    some = events[events["customer_id"].isin(sorted(events["customer_id"].unique())[:300])]
    # Each sweep page waits 4 s between reading and writing, so the workers' sweeps (every 5 s) overlap:
    # without leases they would evaluate the same due customers and emit the same change more than once.
    extra = {"SEGSTREAM_WORKER_INACTIVITY_THRESHOLD_DAYS": "1", "SEGSTREAM_WORKER_FAILPOINT_SWEEP_PAGE_DELAY_S": "4"}
    envs = _envs(embedded_stack, root, tmp_path, workers, extra)
    envs[0].create_topics(partitions=6)
    records = records_from_frame(some)
    keys = [(r["event_id"], r["customer_id"]) for r in records]
    procs = [env.start_worker(f"w{i}") for i, env in enumerate(envs)]
    try:
        for env, proc in zip(envs, procs, strict=True):
            env.wait_http(proc)
        replay(records, envs[0].kafka, envs[0].topics["transactions"])
        wait_until(lambda: done_count(redis_client, envs[0].prefix, keys) == len(keys), 180, "every event done",
                   procs[0], lambda: envs[0].log_text("w0"))  # fmt: skip

        seen: list[int] = []

        def sweeps_settled() -> bool:
            # Settled: inactivity changes were made and no sweep (every 5 s) added one since the last look.
            time.sleep(10)
            changes = read_topic(envs[0].kafka, envs[0].topics["segment_changes"], timeout=3)
            seen.append(sum(1 for c in changes if c["cause"] == "inactivity"))
            return len(seen) >= 2 and seen[-1] == seen[-2] > 0

        wait_until(sweeps_settled, 120, "the sweeps to settle")
        metrics = [env.metrics() for env in envs]
    finally:
        for proc in procs:
            stop(proc)
    changes = [c for c in read_topic(envs[0].kafka, envs[0].topics["segment_changes"]) if c["cause"] == "inactivity"]
    copies = collections.Counter(c["change_id"] for c in changes)
    assert changes and max(copies.values()) == 1, copies.most_common(3)
    assert sum(m["segstream_inactivity_changes_total"] for m in metrics) == len(changes)
    # One worker holds every shard's sweep lease while it lives: the others evaluate nobody.
    swept = sorted(m["segstream_sweep_evaluations_total"] for m in metrics)
    assert swept[-1] > 0 and swept[:-1] == [0] * (workers - 1), swept
