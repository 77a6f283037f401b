"""The state store alone, no faust and no broker: what Redis and the client spend per event on apply + finalize.

The full bench shares two cores between the broker, Redis, the worker and the load generator, so the store's
own cost moves with everything else. This drives :class:`~segstream.streams.state.RedisStateStore` directly
with the bench's events (:func:`~segstream.bench.workload.make_workload`), in batches as the worker makes them,
finalizing each the way the worker does (a segment record per customer, sales, done markers, the inactivity
check), on a fresh ``redis-server`` with AOF on. The first tenth of the events warms the state up and is not
measured. Each run reports Redis CPU (``INFO cpu``), the client's CPU (this process), AOF bytes and the
commands per event; the median of several runs is the figure.

``fold="redis"`` folds with the Lua APPLY script (the default), ``fold="worker"`` in this process with a COMMIT
script; with the latter, ``fold_cache=0`` makes the store read and parse every customer whole each batch (the
baseline for the cache).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.bench.procs import free_port
from segstream.bench.redis_cost import RedisSnapshot, cost_per_event, snapshot_of
from segstream.models.features import DAY_MS

_WARM_UP = 0.1


@dataclass
class StoreRun:
    """One run's figures, per measured event."""

    redis_us: float
    client_us: float
    aof_bytes: float
    commands: dict[str, float]  # command -> Redis us per event (script inner commands count in both)
    calls: dict[str, float]  # command -> calls per event
    memory_per_customer: float


@dataclass
class StoreBench:
    """Several runs of the same configuration and their medians."""

    events: int
    customers: int
    batch: int
    fold: str
    fold_cache: int
    runs: list[StoreRun] = field(default_factory=list)

    def median(self, name: str) -> float:
        """The median of a per-run figure (``redis_us``, ``client_us``, ``aof_bytes``, ...)."""
        return statistics.median(getattr(r, name) for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """Every run and the medians, for ``--json``."""
        names = ("redis_us", "client_us", "aof_bytes", "memory_per_customer")
        return {
            "events": self.events, "customers": self.customers, "batch": self.batch, "fold": self.fold,
            "fold_cache": self.fold_cache,
            "median": {n: self.median(n) for n in names}, "runs": [vars(r) for r in self.runs],
        }  # fmt: skip

    def render(self) -> str:
        """A short table: medians, then every run."""
        lines = [
            f"store only: {self.events} events over {self.customers} customers, batches of {self.batch}, "
            f"fold in {self.fold}" + (f" (cache {self.fold_cache})" if self.fold == "worker" else "")
            + f"; medians of {len(self.runs)} runs, per measured event",
            f"  Redis CPU    {self.median('redis_us'):7.1f} us",
            f"  client CPU   {self.median('client_us'):7.1f} us",
            f"  sum          {self.median('redis_us') + self.median('client_us'):7.1f} us",
            f"  AOF          {self.median('aof_bytes'):7.1f} bytes",
            f"  Redis memory {self.median('memory_per_customer'):7.0f} bytes per customer (no dedupe TTL expiry)",
            "  runs (Redis / client us): " + ", ".join(f"{r.redis_us:.1f} / {r.client_us:.1f}" for r in self.runs),
        ]
        top = sorted(self.runs[len(self.runs) // 2].commands.items(), key=lambda kv: -kv[1])[:6]
        lines.append("  commands (Redis us per event): " + ", ".join(f"{k} {v:.1f}" for k, v in top))
        return "\n".join(lines)


def run_store_bench(events: int, customers: int, *, batch: int = 500, runs: int = 3, fold: str = "redis",
                    fold_cache: int = 50_000, seed: int = 1) -> StoreBench:  # fmt: skip
    """Run the store alone ``runs`` times on fresh servers and collect the figures."""
    from segstream.bench.workload import make_workload
    from segstream.models.events import parse_event

    workload = make_workload(events, customers, seed, "store")
    parsed = [parse_event(v) for v in workload.values]
    result = StoreBench(len(parsed), workload.customers, batch, fold, fold_cache)
    for _ in range(runs):
        result.runs.append(asyncio.run(_one_run(parsed, batch, fold, fold_cache, workload.customers)))
    return result


async def _one_run(events: list[Any], batch: int, fold: str, fold_cache: int, customers: int) -> StoreRun:
    import redis

    from segstream.embedded.binaries import find_redis_server
    from segstream.streams.state import RedisStateStore

    work = Path(tempfile.mkdtemp(prefix="segstream-store-bench-"))
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own redis-server binary, loopback only
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work), "--appendonly", "yes",
         "--appendfsync", "everysec", "--save", "", "--auto-aof-rewrite-percentage", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0", fold=fold, fold_cache=fold_cache)
    try:
        _wait_for(client)
        warm = int(len(events) * _WARM_UP)
        await _drive(store, events[:warm], batch)
        before, mine0 = _snapshot(client), time.process_time()
        await _drive(store, events[warm:], batch)
        after, mine1 = _snapshot(client), time.process_time()
        n = len(events) - warm
        cost = cost_per_event(before, after, n)
        commands = {name: c["us_per_event"] for name, c in cost["commands"].items()}
        calls = {name: c["calls_per_event"] for name, c in cost["commands"].items()}
        memory = client.info("memory")["used_memory"] / max(1, customers)
        # the server runs with AOF on and rewrites off, so the file only grows
        aof_bytes = ((after.aof_bytes or 0) - (before.aof_bytes or 0)) / n
        return StoreRun(cost["cpu_us_per_event"], (mine1 - mine0) / n * 1e6, aof_bytes, commands, calls, memory)
    finally:
        await store.close()
        client.close()
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


async def _drive(store: Any, events: list[Any], batch: int) -> None:
    """Apply and finalize ``events`` batch by batch, as the worker does (segments are made up, stably)."""
    from segstream.streams.state import Finalization, SegmentRecord

    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        applied = await store.apply(chunk)
        wm = applied.watermark_ms
        segment_of = {cid: (sum(map(ord, cid)) + wm // (30 * DAY_MS)) % 5 for cid in applied.customers}
        segments = {cid: SegmentRecord(s, None, 0, "store-bench", wm) for cid, s in segment_of.items()}
        sales = [(e.event_id, e.ts_ms // DAY_MS, segment_of[e.customer_id], e.amount_cents) for e in chunk]
        due = {cid: wm + 30 * DAY_MS for cid in applied.customers}
        await store.finalize(Finalization(segments, [], sales, [e.event_id for e in chunk], due))


def _wait_for(client: Any, timeout: float = 10.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _snapshot(client: Any) -> RedisSnapshot:
    return snapshot_of(client.info("cpu"), client.info("commandstats"), client.info("stats"),
                       client.info("persistence"))  # fmt: skip
