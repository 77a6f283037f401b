"""The measured phases of one bench run: ceiling, worker (throughput, latency, RSS), baseline, two workers.

Every phase runs its processes alone (this box has two cores), on the same pre-loaded input topic, each
with its own consumer group and Redis key prefix, so they see the same events and never each other's
state. The worker is started through its CLI (``segstream worker``) with ``SEGSTREAM_*`` environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.bench.procs import (
    Child,
    CountWindow,
    batch_profile,
    consumer_lag,
    cpu_seconds_of,
    cpu_us_per_event,
    free_port,
    main_thread_sched,
    module_command,
    read_metrics,
    rss_mb,
    sched_percent,
    segstream_command,
    wait_result_file,
    watch_count,
)
from segstream.bench.redis_cost import RedisCostMeter
from segstream.bench.workload import Workload
from segstream.settings import Settings

PROCESSED = "segstream_events_processed_total"
# The Redis key prefix of the measured worker (and of the latency-sweep workers that continue its state).
WORKER_PREFIX = "{}:worker"
# Seconds a phase may take once its first event was consumed, per 1000 events (plus a floor).
_SECONDS_PER_1000 = 5.0


@dataclass
class RunContext:
    """What every phase of a run shares."""

    run_id: str
    work_dir: Path
    settings: Settings
    models_root: Path
    bundle_dir: Path
    workload: Workload
    partitions: int
    uvloop: bool
    # Process name -> its pids: "redis" has one per node on a Redis Cluster (their CPU is summed).
    stack_pids: dict[str, list[int]] = field(default_factory=dict)
    fetch_max_wait_ms: int | None = None
    say: Callable[[str], None] = lambda _msg: None

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def topics(self, tag: str) -> dict[str, str]:
        """The topic names of one input set (``tag``), as ``SEGSTREAM_TOPIC_*`` values."""
        base = f"{self.run_id}.{tag}"
        return {"TRANSACTIONS": f"{base}.transactions", "SCORED": f"{base}.scored",
                "SEGMENT_CHANGES": f"{base}.segment-changes", "SALES_FORECASTS": f"{base}.sales-forecasts",
                "DEAD_LETTERS": f"{base}.dead-letters", "MONITORING": f"{base}.monitoring",
                "CUSTOMER_PROFILES": f"{base}.customer-profiles"}  # fmt: skip

    def env(self, tag: str, group: str, prefix: str, web_port: int | None = None) -> dict[str, str]:
        """The ``SEGSTREAM_*`` environment of a child process."""
        env = {f"SEGSTREAM_TOPIC_{k}": v for k, v in self.topics(tag).items()}
        env.update({
            "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka.bootstrap_servers,
            "SEGSTREAM_REDIS_URL": self.settings.redis.url,
            "SEGSTREAM_REDIS_KEY_PREFIX": prefix,
            "SEGSTREAM_TOPIC_PARTITIONS": str(self.partitions),
            "SEGSTREAM_MODEL_ROOT": str(self.models_root),
            "SEGSTREAM_WORKER_GROUP_ID": group,
            # The worker puts faust's datadir next to the stack state dir (faust creates only the last level).
            "SEGSTREAM_STACK_STATE_DIR": str(self.work_dir / "stack-state"),
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        if web_port is not None:
            env["SEGSTREAM_WEB_PORT"] = str(web_port)
        return env

    def timeout(self, events: int) -> float:
        return max(60.0, _SECONDS_PER_1000 * events / 1000)


def run_counting_process(ctx: RunContext, module: str, name: str, events: int, extra: list[str]) -> dict[str, Any]:
    """Run a bench faust process (ceiling or baseline) on the main input until it counted ``events``."""
    group = f"{ctx.run_id}-{name}"
    result = ctx.work_dir / f"{name}.json"
    args = ["--group", group, "--expect", str(events), "--result", str(result), *extra]
    if not ctx.uvloop:
        args.append("--no-uvloop")
    if ctx.fetch_max_wait_ms is not None:
        args += ["--fetch-max-wait-ms", str(ctx.fetch_max_wait_ms)]
    env = ctx.env("main", group, f"{ctx.run_id}:{name}")
    child = Child.start(name, module_command(module, *args), env, ctx.log_dir)
    return wait_result_file(child, result, ctx.timeout(events) + 120)


def run_ceiling(ctx: RunContext, mode: str = "worker", name: str = "ceiling") -> dict[str, Any]:
    """The bare-faust agent counting every pre-loaded event (``name`` keeps repeated runs in their own groups)."""
    return run_counting_process(ctx, "segstream.bench.ceiling", name, len(ctx.workload), ["--mode", mode])


def run_baseline(ctx: RunContext, events: int, budget_s: float) -> dict[str, Any]:
    """The naive worker on the first ``events`` pre-loaded events, or for ``budget_s`` seconds if sooner."""
    n = min(events, len(ctx.workload))
    return run_counting_process(ctx, "segstream.bench.baseline", "baseline", n, ["--budget-s", str(budget_s)])


def start_worker(ctx: RunContext, name: str, tag: str, group: str, prefix: str) -> tuple[Child, int]:
    """``segstream worker`` as a child process; returns it and its HTTP port."""
    port = free_port()
    argv = segstream_command("worker", "--loglevel", "warning", *([] if ctx.uvloop else ["--no-uvloop"]))
    env = ctx.env(tag, group, prefix, port)
    if ctx.fetch_max_wait_ms is not None:  # the worker applies the setting to faust's consumer itself
        env["SEGSTREAM_KAFKA_FETCH_MAX_WAIT_MS"] = str(ctx.fetch_max_wait_ms)
    return Child.start(name, argv, env, ctx.log_dir), port


class Sampler:
    """Reads a worker's processed counter and, with it, CPU seconds of the worker, Redis and the broker."""

    def __init__(self, ctx: RunContext, child: Child, port: int) -> None:
        self.child, self.port = child, port
        self.pids = {"worker": [child.pid], **ctx.stack_pids}
        self.samples: list[tuple[float, float, dict[str, float]]] = []
        self.sched: list[tuple[float, float]] = []  # the worker's main thread, one per sample
        self.on_first: Callable[[], None] | None = None

    def __call__(self) -> float | None:
        metrics = read_metrics(self.port)
        if metrics is None:
            return None
        count = metrics.get(PROCESSED, 0.0)
        if count > 0 and self.on_first is not None:
            self.on_first()
            self.on_first = None
        self.samples.append((time.perf_counter(), count, self._cpu()))
        self.sched.append(main_thread_sched(self.child.pid))
        return count

    def _window_ends(self, window: CountWindow) -> tuple[int, int] | None:
        """Indices of the first and last poll within the window (None with fewer than two)."""
        inside = [i for i, s in enumerate(self.samples) if window.t_first - 0.2 <= s[0] <= window.t_end + 0.2]
        return (inside[0], inside[-1]) if len(inside) >= 2 else None

    def cpu_percent(self, window: CountWindow) -> dict[str, float]:
        """CPU use of each process (100 = one core) between the window's first and last poll."""
        ends = self._window_ends(window)
        if ends is None:
            return {}
        (t0, _, c0), (t1, _, c1) = self.samples[ends[0]], self.samples[ends[1]]
        return cpu_percent_between((t0, c0), (t1, c1))

    def cpu_us_per_event(self, window: CountWindow) -> dict[str, float]:
        """CPU microseconds per event of each process (and their sum) between the window's first and last poll."""
        ends = self._window_ends(window)
        if ends is None:
            return {}
        (_, n0, c0), (_, n1, c1) = self.samples[ends[0]], self.samples[ends[1]]
        return cpu_us_per_event(c0, c1, n1 - n0)

    def main_thread_percent(self, window: CountWindow) -> dict[str, float]:
        """The worker's main thread between the window's first and last poll: shares on a CPU and waiting."""
        ends = self._window_ends(window)
        if ends is None:
            return {}
        first, last = ends
        seconds = self.samples[last][0] - self.samples[first][0]
        return sched_percent(self.sched[first], self.sched[last], seconds)

    def cpu_now(self) -> tuple[float, dict[str, float]]:
        """(now, CPU seconds so far of each process), for :func:`cpu_percent_between`."""
        return time.perf_counter(), self._cpu()

    def _cpu(self) -> dict[str, float]:
        return {k: cpu_seconds_of(p) for k, p in self.pids.items()}


def cpu_percent_between(
    before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]
) -> dict[str, float]:
    """CPU use of each process (100 = one core) between two (time, CPU seconds) snapshots."""
    (t0, c0), (t1, c1) = before, after
    return {k: 100 * (c1[k] - c0[k]) / (t1 - t0) for k in c0} if t1 > t0 else {}


def run_worker(ctx: RunContext, latency_s: float, latency_rate: float | None,
               on_first: Callable[[Child], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """The real worker: sustained throughput over the pre-loaded events, then latency at a fixed rate."""
    redis_meter = RedisCostMeter(ctx.settings.redis.url, ctx.settings.redis.client_kwargs())
    redis_before = redis_meter.snapshot()
    child, port = start_worker(ctx, "worker", "main", f"{ctx.run_id}-worker", WORKER_PREFIX.format(ctx.run_id))
    try:
        sampler = Sampler(ctx, child, port)
        if on_first is not None:
            sampler.on_first = lambda: on_first(child)
        n = len(ctx.workload)
        window = watch_count([sampler], n, ctx.timeout(n), on_poll=child.check_alive)
        out: dict[str, Any] = {
            "throughput_batches": batch_profile({}, read_metrics(port, labelled=True) or {}),
            "events": n,
            "eps": window.eps,
            "seconds": window.t_end - window.t_first,
            "cpu_percent": sampler.cpu_percent(window),
            "cpu_us_per_event": sampler.cpu_us_per_event(window),
            "main_thread_percent": sampler.main_thread_percent(window),
            "redis_cost": redis_meter.cost_since(redis_before, n),
            "rss_after_throughput": rss_mb(child.pid),
        }
        if latency_s > 0:
            rate = latency_rate or max(1.0, window.eps / 2)
            out["latency"] = _latency_point(ctx, "main", sampler, redis_meter, rate, latency_s, first=0)
        out["rss"] = rss_mb(child.pid)
        out["metrics"] = read_metrics(port) or {}
        return out
    finally:
        child.stop()
        redis_meter.close()


def sweep_tag(k: int) -> str:
    """The topic set (see :meth:`RunContext.topics`) of the ``k``-th latency-sweep point."""
    return f"sweep{k}"


def run_latency_sweep(ctx: RunContext, fractions: Sequence[float], throughput_eps: float, latency_s: float,
                      first: int) -> list[dict[str, Any]]:  # fmt: skip
    """Latency again at each fraction of ``throughput_eps``, lowest first: where p99 stands at other rates.

    Each point gets its own topics and a fresh worker on the main worker's Redis state (warm, as in the main
    latency phase): on the embedded broker a topic that has taken many small record batches makes every
    fetch slower (see segstream.bench.latency), so points measured one after another on the same topics
    would measure that decay instead. Follow-up events continue from ``first``: new ids, later timestamps.
    """
    points: list[dict[str, Any]] = []
    redis_meter = RedisCostMeter(ctx.settings.redis.url, ctx.settings.redis.client_kwargs())
    try:
        for k, fraction in enumerate(sorted(fractions)):
            tag = sweep_tag(k)
            child, port = start_worker(ctx, f"worker-{tag}", tag, f"{ctx.run_id}-{tag}",
                                       WORKER_PREFIX.format(ctx.run_id))  # fmt: skip
            try:
                wait_assigned([(child, port)], timeout=90)
                sampler = Sampler(ctx, child, port)
                rate = max(1.0, fraction * throughput_eps)
                point = _latency_point(ctx, tag, sampler, redis_meter, rate, latency_s, first)
                first += int(point["sent"])
                points.append({"fraction_of_throughput": fraction, **point})
            finally:
                child.stop()
    finally:
        redis_meter.close()
    return points


def _latency_point(ctx: RunContext, tag: str, sampler: Sampler, redis_meter: RedisCostMeter, rate: float,
                   seconds: float, first: int) -> dict[str, Any]:  # fmt: skip
    """Offer ``rate`` events/s to the ``tag`` topics' worker: latency percentiles, CPU, batches, Redis cost."""
    from segstream.bench.latency import measure_latency

    ctx.say(f"latency: offering {rate:,.0f} events/s for {seconds:.0f}s")
    topics = ctx.topics(tag)
    before, cpu_before = read_metrics(sampler.port, labelled=True) or {}, sampler.cpu_now()
    redis_before = redis_meter.snapshot()
    point = measure_latency(ctx.settings.kafka, topics["TRANSACTIONS"], topics["SCORED"], ctx.workload, rate,
                            seconds, ctx.run_id, first=first)  # fmt: skip
    # At this rate the broker and the load generator are busier than in the throughput phase (many small
    # fetches and record batches): say how the two cores were shared while latency was measured.
    cpu_after = sampler.cpu_now()
    after = read_metrics(sampler.port, labelled=True) or {}
    point["cpu_percent"] = cpu_percent_between(cpu_before, cpu_after)
    # Per event the worker processed meanwhile (received scored records as a fallback if /metrics failed).
    processed = after.get(PROCESSED, 0.0) - before.get(PROCESSED, 0.0) if before and after else point["received"]
    point["cpu_us_per_event"] = cpu_us_per_event(cpu_before[1], cpu_after[1], processed)
    point["batches"] = batch_profile(before, after)
    point["redis_cost"] = redis_meter.cost_since(redis_before, int(point["received"]))
    return point


def run_two_workers(ctx: RunContext, produce: Callable[[str], float]) -> dict[str, Any]:
    """Two workers in one group on the ``two`` topics: wait until both hold partitions, then produce."""
    group, prefix = f"{ctx.run_id}-two", f"{ctx.run_id}:two"
    children = [start_worker(ctx, f"worker-{i}", "two", group, prefix) for i in (1, 2)]
    try:
        wait_assigned(children, timeout=90)
        produce(ctx.topics("two")["TRANSACTIONS"])
        samplers = [Sampler(ctx, child, port) for child, port in children]
        n = len(ctx.workload)

        def alive() -> None:
            for child, _ in children:
                child.check_alive()

        window = watch_count(samplers, n, ctx.timeout(n), on_poll=alive)
        return {"events": n, "eps": window.eps, "per_worker_events": window.per_source,
                "both_active": all(c > 0 for c in window.per_source)}  # fmt: skip
    finally:
        for child, _ in children:
            child.stop()


def wait_assigned(children: list[tuple[Child, int]], timeout: float) -> None:
    """Wait until every worker reports lag gauges (it holds partitions) and the group has settled."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    last: list[str] = []
    while time.monotonic() < deadline:
        for child, _ in children:
            child.check_alive()
        now = [_partitions(port) for _, port in children]
        if all(now) and now == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 3.0:
                return
        else:
            stable_since = None
        last = now
        time.sleep(0.5)


def _partitions(port: int) -> str:
    """The partitions a worker holds, as one comparable string ("" while it does not answer)."""
    return ",".join(sorted(consumer_lag(read_metrics(port, labelled=True) or {})))
