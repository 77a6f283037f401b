"""Rebalances under load: parity must stay exact when a worker dies mid-stream and another one joins.

Two workers share a group over the ``rebalance`` topics; the first two thirds of the events are produced.
Once a third of all events are processed, worker B is killed with SIGKILL (no clean leave: its in-flight
batch is neither finalized nor committed, so the group hands its partitions to A after the session timeout
and A sees B's uncommitted events again). Once A holds every partition, a fresh worker B' joins (a second
rebalance); only when B' holds partitions is the last third produced, so both rebalances happen with work
in flight and B' really processes some of it. The phase ends when the live workers hold every partition
with no lag left; the caller then checks parity: the Redis state must equal the batch aggregates, i.e. no
event lost and none folded twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from segstream.bench.errors import BenchError
from segstream.bench.phases import PROCESSED, RunContext, start_worker, wait_assigned
from segstream.bench.procs import Child, consumer_lag, read_metrics

DUPLICATES = "segstream_duplicates_total"


class _Watched:
    """One worker process and the last figures its ``/metrics`` gave."""

    def __init__(self, child: Child, port: int) -> None:
        self.child, self.port = child, port
        self.seen = 0.0  # processed + skipped as duplicates
        self.lag: dict[str, float] = {}

    def poll(self) -> None:
        metrics = read_metrics(self.port, labelled=True)
        if metrics is not None:
            self.seen = metrics.get(PROCESSED, 0.0) + metrics.get(DUPLICATES, 0.0)
            self.lag = consumer_lag(metrics)


def run_rebalance(
    ctx: RunContext, produce: Callable[[str, list[tuple[bytes, bytes]]], float], partitions: int
) -> dict[str, Any]:
    """Kill one of two workers a third of the way through and add a new one later; wait for the drain.

    Returns:
        ``events``, ``seconds`` (from produce to drained), the events each worker saw, and when B was
        killed and B' started (as counts of events seen by then).
    """
    tag, group, prefix = "rebalance", f"{ctx.run_id}-rebalance", f"{ctx.run_id}:rebalance"
    n = len(ctx.workload)
    a = _Watched(*start_worker(ctx, "rebalance-a", tag, group, prefix))
    b = _Watched(*start_worker(ctx, "rebalance-b", tag, group, prefix))
    b2: _Watched | None = None
    try:
        wait_assigned([(a.child, a.port), (b.child, b.port)], timeout=90)
        started = time.perf_counter()
        topic = ctx.topics(tag)["TRANSACTIONS"]
        pairs = list(ctx.workload.pairs())
        first, rest = pairs[: 2 * n // 3], pairs[2 * n // 3 :]
        # Produced from a thread: the workers keep up with the producer, so the kill must land while it runs.
        producer = threading.Thread(target=produce, args=(topic, first), daemon=True)
        producer.start()
        deadline = time.monotonic() + ctx.timeout(n) * 3 + 120
        live = [a, b]

        def wait_until(done: Callable[[], bool], what: str) -> None:
            while not done():
                if time.monotonic() > deadline:
                    raise BenchError(f"rebalance phase: {what} did not happen in time")
                for w in live:
                    w.child.check_alive()
                    w.poll()
                time.sleep(0.1)

        wait_until(lambda: a.seen + b.seen >= n / 3, "a third of the events processed")
        b.poll()
        b.child.proc.kill()  # SIGKILL: no leave, no commit, a batch possibly half done
        b.child.proc.wait(10)
        live.remove(b)
        killed_at = a.seen + b.seen
        ctx.say(f"rebalance: killed worker B after {killed_at:,.0f} events; A takes over")
        wait_until(lambda: len(a.lag) >= partitions, "worker A taking over B's partitions")
        took_over_at = a.seen + b.seen
        ctx.say(f"rebalance: A holds every partition after {took_over_at:,.0f} events")
        producer.join(ctx.timeout(n) + 60)
        a.poll()
        b2 = _Watched(*start_worker(ctx, "rebalance-b2", tag, group, prefix))
        live.append(b2)
        joined_at = a.seen + b.seen
        ctx.say(f"rebalance: worker B' joins after {joined_at:,.0f} events")
        wait_until(lambda: bool(b2.lag) and len(a.lag) < partitions, "worker B' getting partitions")
        produce(topic, rest)

        def drained() -> bool:
            assert b2 is not None
            held = {**a.lag, **b2.lag}
            total = a.seen + b.seen + b2.seen
            return len(held) >= partitions and not any(held.values()) and total >= n

        wait_until(drained, "draining every partition")
        return {
            "events": n,
            "seconds": time.perf_counter() - started,
            "seen_per_worker": {"a": a.seen, "b_killed": b.seen, "b_joined": b2.seen},
            "killed_after": killed_at,
            "a_took_over_after": took_over_at,
            "joined_after": joined_at,
            "b_joined_active": b2.seen > 0,
        }
    finally:
        for w in (a, b, b2):
            if w is not None:
                w.child.stop()
