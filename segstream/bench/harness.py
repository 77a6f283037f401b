"""One bench run end to end: stack, bundle, events, the measured phases, micro-benchmarks, memory.

:func:`run_bench` returns the report dictionary (see :mod:`segstream.bench.report` for its stable keys).
On the embedded stack (the default) a fresh broker and Redis are started on free ports in a temporary
directory and stopped afterwards; with ``use_running`` the ``SEGSTREAM_*`` Kafka and Redis are used and
only this run's topics (named ``bench-<id>.*``) and keys (prefix ``bench-<id>``) are touched; the keys
are deleted at the end. With ``redis_cluster`` the embedded broker is joined by a local Redis Cluster
(3 masters, 1 replica each) in the work directory instead of the single Redis.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segstream.bench.errors import BenchError
from segstream.settings import KafkaSettings, RedisSettings, Settings, redact_url


@dataclass
class BenchConfig:
    """What to run and how big.

    Attributes:
        events: Events pre-loaded and consumed by the ceiling and the worker.
        customers: Customers the events are spread over.
        baseline_events: Events the naive baseline processes (default: events / 10, at least 1000).
        baseline_budget_s: The baseline stops this many seconds after its first event if it has not
            processed ``baseline_events`` by then (its rate is what is compared).
        partitions: Partitions of the input topics.
        latency_s: Seconds of fixed-rate offering for the latency percentiles (0 skips it).
        latency_rate: Offered events/s (default: half the measured worker throughput).
        latency_sweep: Fractions of the measured throughput at which latency is measured again, each for
            ``latency_s``, after the main point: where p99 meets its target and where it stops doing so.
        memory_customers: Customers loaded for Redis bytes per customer (0 skips it).
        two_workers: Also measure two workers in one group over the partitions, then check parity after a
            worker is killed mid-stream and another joins (segstream.bench.rebalance).
        train_events: Also time training on about this many generated transactions (0 skips it).
        micro: Run the micro-benchmarks.
        profile: Profile a separate worker run with py-spy (when installed) and summarise it.
        use_running: Use the configured Kafka and Redis instead of a fresh embedded stack.
        bundle: An existing bundle to score with (default: train a small one).
        uvloop: Run the faust processes on uvloop when installed.
        ceiling_mode: ``worker`` (consume exactly like the worker), ``take`` (faust's ``take_events``) or
            ``each`` (plain ``async for``).
        seed: Seed of the generated events.
        fetch_max_wait_ms: What-if: run every faust process (the worker through its
            ``SEGSTREAM_KAFKA_FETCH_MAX_WAIT_MS``) with this consumer fetch wait.
        redis_fsync: On the embedded stack only: ``appendfsync`` for the whole run (``always`` is the
            stack's own setting; ``everysec`` is Redis's default and the cluster nodes'). None leaves it as
            started. On a cluster it is set on every node.
        redis_cluster: Run on a local Redis Cluster (3 masters, 1 replica each) instead of the single Redis.
        keep: Keep the work directory (logs, results) instead of deleting it.
    """

    events: int = 100_000
    customers: int = 10_000
    baseline_events: int | None = None
    baseline_budget_s: float = 20.0
    partitions: int = 4
    latency_s: float = 10.0
    latency_rate: float | None = None
    latency_sweep: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
    memory_customers: int = 1_000_000
    two_workers: bool = True
    train_events: int = 1_000_000
    micro: bool = True
    profile: bool = False
    use_running: bool = False
    bundle: Path | None = None
    uvloop: bool = True
    ceiling_mode: str = "worker"
    seed: int = 0
    fetch_max_wait_ms: int | None = None
    redis_fsync: str | None = None
    redis_cluster: bool = False
    keep: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """A CI-sized run (well under a minute of measuring): small counts, no second worker."""
        base = {"events": 12_000, "customers": 1_500, "baseline_events": 1_000, "baseline_budget_s": 5.0,
                "latency_s": 3.0, "latency_sweep": (), "memory_customers": 10_000, "two_workers": False,
                "train_events": 0}  # fmt: skip
        return cls(**{**base, **overrides})

    @property
    def naive_events(self) -> int:
        return self.baseline_events or max(1000, min(self.events // 10, 20_000))


@contextmanager
def _services(config: BenchConfig, work_dir: Path) -> Iterator[tuple[Settings, dict[str, list[int]]]]:
    if config.use_running:
        if config.redis_cluster:
            raise BenchError(
                "--redis-cluster starts its own cluster and cannot be combined with --use-running; "
                "to bench a running cluster set SEGSTREAM_REDIS_URL=redis+cluster://host:port"
            )
        yield Settings.load(), {}
        return
    from segstream.bench.procs import free_port
    from segstream.embedded import EmbeddedStack

    stack = EmbeddedStack(work_dir / "stack", kafka_port=free_port(), redis_port=free_port())
    cluster = None
    try:
        if config.redis_cluster:
            from segstream.embedded.redis_cluster import RedisClusterError, start_redis_cluster

            stack.start_service("kafka", timeout=30)  # the broker only: the cluster replaces the single Redis
            try:
                cluster = start_redis_cluster(work_dir / "redis-cluster", masters=3, replicas_per_master=1)
            except RedisClusterError as exc:
                raise BenchError(f"could not start the local Redis Cluster: {exc}") from exc
            redis_url, redis_pids = cluster.url, [node.process.pid for node in cluster.nodes]
        else:
            stack.up(timeout=30)
            redis_url, redis_pids = stack.redis_url, []
        status = stack.status()
        pids = {name: [int(status[name]["pid"])] for name in ("kafka", "redis") if status[name].get("pid")}
        if redis_pids:
            pids["redis"] = redis_pids
        redis = RedisSettings(url=redis_url)
        if config.redis_fsync:
            _redis_config(redis.url, redis.client_kwargs(), appendfsync=config.redis_fsync)
        yield Settings.load(kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap), redis=redis), pids
    finally:
        if cluster is not None:
            cluster.stop()
        stack.down()


def _produce(settings: Settings, topic: str, pairs: Any) -> float:
    from segstream.streams.replay import replay

    result = replay([], settings.kafka, topic, raw_values=pairs)
    return result.rate


def run_bench(config: BenchConfig, say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Run every phase and return the report dictionary.

    Raises:
        BenchError: A phase did not finish in time or a process died (the message has its log tail).
    """
    from segstream.bench import micro, phases, report
    from segstream.bench.memory import redis_memory
    from segstream.bench.workload import make_workload, train_bench_bundle, use_bundle
    from segstream.streams.topics import ensure_topics, wait_for_topics

    run_id = f"bench-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work_dir = Path(tempfile.mkdtemp(prefix=f"segstream-{run_id}-"))
    started = time.perf_counter()
    results: dict[str, Any] = {"run_id": run_id, "config": {k: str(v) if isinstance(v, Path) else v
                                                            for k, v in asdict(config).items()}}  # fmt: skip
    try:
        with _services(config, work_dir) as (settings, stack_pids):
            say(
                f"run {run_id}: Kafka {settings.kafka.bootstrap_servers}, Redis {redact_url(settings.redis.url)}, "
                f"work dir {work_dir}"
            )
            results["redis"] = _redis_topology(settings)
            models_root = work_dir / "models"
            t0 = time.perf_counter()
            bundle = use_bundle(config.bundle, models_root) if config.bundle else train_bench_bundle(models_root)
            results["bundle"] = {"path": str(bundle), "train_seconds": time.perf_counter() - t0}
            say(f"bundle ready ({results['bundle']['train_seconds']:.1f}s); generating {config.events:,} events")
            workload = make_workload(config.events, config.customers, config.seed, run_id)
            if len(workload) == 0:
                raise BenchError("the generator made no events; raise --events or --customers")
            ctx = phases.RunContext(run_id, work_dir, settings, models_root, bundle, workload, config.partitions,
                                    config.uvloop, stack_pids, config.fetch_max_wait_ms, say)  # fmt: skip
            tags = ["main", "two", "rebalance"] if config.two_workers else ["main"]
            sweep = config.latency_sweep if config.latency_s > 0 else ()
            tags += [phases.sweep_tag(k) for k in range(len(sweep))]
            names = [name for tag in tags for name in ctx.topics(tag).values()]
            names += [ctx.topics("main")["SCORED"] + ".naive", ctx.topics("main")["SEGMENT_CHANGES"] + ".naive"]
            ensure_topics(settings.kafka, names, partitions=config.partitions)
            wait_for_topics(settings.kafka, names, timeout=30)
            rate = _produce(settings, ctx.topics("main")["TRANSACTIONS"], workload.pairs())
            results["workload"] = {"events": len(workload), "customers": workload.customers,
                                   "span_days": workload.span_days, "preload_eps": rate}  # fmt: skip
            say(f"pre-loaded {len(workload):,} events ({rate:,.0f}/s); bare-faust ceiling ({config.ceiling_mode})")
            results["ceiling"] = phases.run_ceiling(ctx, config.ceiling_mode)
            say(f"ceiling {results['ceiling']['eps']:,.0f} events/s; worker")
            results["worker"] = phases.run_worker(ctx, config.latency_s, config.latency_rate)
            from segstream.bench.noise import noise, read_changes

            changes = read_changes(settings.kafka, ctx.topics("main")["SEGMENT_CHANGES"])
            results["noise"] = noise(changes, len(workload))
            # The ceiling again, so the worker is bracketed by two and drift over the run shows in their spread.
            say(f"worker {results['worker']['eps']:,.0f} events/s; bare-faust ceiling again")
            results["ceiling_runs"] = [results["ceiling"], phases.run_ceiling(ctx, config.ceiling_mode, "ceiling-2")]
            say(f"ceiling {results['ceiling_runs'][1]['eps']:,.0f} events/s; naive baseline on "
                f"{config.naive_events:,} events")  # fmt: skip
            results["baseline"] = phases.run_baseline(ctx, config.naive_events, config.baseline_budget_s)
            say(f"baseline {results['baseline']['eps']:,.0f} events/s")
            latency = results["worker"].get("latency")
            if sweep and latency:
                say(f"latency sweep at {', '.join(f'{f:g}' for f in sorted(sweep))} of the worker's throughput")
                results["worker"]["latency_sweep"] = phases.run_latency_sweep(
                    ctx, sweep, results["worker"]["eps"], config.latency_s, first=int(latency["sent"])
                )
            if config.two_workers:
                say("two workers in one group")
                results["two_workers"] = phases.run_two_workers(
                    ctx, lambda topic: _produce(settings, topic, workload.pairs())
                )
                from segstream.bench.parity import check_parity

                results["two_workers"]["parity"] = check_parity(
                    settings.redis.url,
                    settings.redis.client_kwargs(),
                    f"{run_id}:two",
                    workload,
                    settings.redis.shards,
                )
                say("rebalance: two workers, one killed mid-stream, a third joining later")
                from segstream.bench.rebalance import run_rebalance

                results["rebalance"] = run_rebalance(
                    ctx, lambda topic, pairs: _produce(settings, topic, pairs), config.partitions
                )
                results["rebalance"]["parity"] = check_parity(
                    settings.redis.url,
                    settings.redis.client_kwargs(),
                    f"{run_id}:rebalance",
                    workload,
                    settings.redis.shards,
                )
            if config.profile:
                from segstream.bench.profile import profile_worker

                say("profiling a separate worker run with py-spy")
                results["profile"] = profile_worker(ctx)
            if config.micro:
                say("micro-benchmarks")
                redis_kwargs = settings.redis.client_kwargs()
                results["micro"] = {
                    "scoring": micro.scoring(bundle, rows=min(100_000, max(10_000, config.events))),
                    "redis_state": micro.redis_state(
                        settings.redis.url, redis_kwargs, f"{run_id}:micro", shards=settings.redis.shards
                    ),
                    "json": micro.json_codec(workload.values),
                }
            if config.train_events > 0:
                from segstream.bench.workload import time_training

                say(f"timing training on ~{config.train_events:,} transactions")
                results["training"] = time_training(config.train_events, work_dir, config.seed)
            results["settings_used"] = report.settings_used(settings, ctx)
            results["settings_used"]["redis"] = _redis_config(settings.redis.url, settings.redis.client_kwargs())
            results["settings_used"]["redis"]["fold"] = settings.redis.fold  # SEGSTREAM_REDIS_FOLD
            if config.memory_customers > 0:
                say(f"Redis memory at {config.memory_customers:,} customers")
                if not config.use_running:  # only our own servers: no AOF while loading (same bytes, faster)
                    _redis_config(settings.redis.url, settings.redis.client_kwargs(), appendonly="no")
                results["memory"] = redis_memory(
                    settings.redis.url, settings.redis.client_kwargs(), f"{run_id}:mem",
                    customers=config.memory_customers, shards=settings.redis.shards,
                    progress=lambda done, total: say(f"  loaded {done:,}/{total:,} customers"),
                )  # fmt: skip
            if config.use_running:
                _delete_run_keys(settings, run_id)
    finally:
        if config.keep:
            say(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    results["wall_seconds"] = time.perf_counter() - started
    return report.build(results)


def _redis_topology(settings: Settings) -> dict[str, Any]:
    """Single server or cluster, and its nodes (the report says what the Redis figures sum over)."""
    import redis

    from segstream.bench.redis_nodes import RedisNodes

    try:
        nodes = RedisNodes(settings.redis.url, settings.redis.client_kwargs())
    except (redis.RedisError, OSError) as exc:  # the worker will say more; the report just lacks the topology
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        return nodes.describe()
    finally:
        nodes.close()


def _redis_config(url: str, client_kwargs: dict[str, Any], **changes: str) -> dict[str, Any]:
    """Apply ``CONFIG SET`` changes (own servers only: every node of a cluster) and return the persistence
    settings and version (one value when every node agrees, else each node's)."""
    import redis

    from segstream.bench.redis_nodes import RedisNodes, agreed

    nodes = RedisNodes(url, client_kwargs)
    try:
        for node in nodes.nodes:
            for name, value in changes.items():
                node.client.config_set(name, value)
        out: dict[str, Any] = {"version": agreed([n.client.info("server").get("redis_version") for n in nodes.nodes])}
        try:
            for name in ("appendonly", "appendfsync"):
                out[name] = agreed([n.client.config_get(name).get(name) for n in nodes.nodes])
        except redis.ResponseError:  # CONFIG may be disabled on a managed Redis
            pass
        return out
    finally:
        nodes.close()


def _delete_run_keys(settings: Settings, run_id: str) -> None:
    import asyncio

    from segstream.bench.memory import _delete_prefix
    from segstream.redis_clients import async_client

    async def go() -> None:
        client = async_client(settings.redis.url, **settings.redis.client_kwargs())
        try:
            await _delete_prefix(client, run_id)
        finally:
            await client.aclose()

    asyncio.run(go())
