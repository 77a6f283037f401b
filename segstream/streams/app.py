"""The faust app: consume ``transactions`` in micro-batches and run the pipeline, plus the periodic tasks.

``create_worker(settings)`` builds the app and a :class:`WorkerRuntime` holding everything the agent and
the timers share (store, model holder, stats, the batch lock). ``run_worker`` runs it in the foreground
with uvloop when installed.

Consumer settings come from :meth:`segstream.settings.KafkaSettings.faust_app_kwargs`: a short session and
rebalance timeout so joins are quick on the embedded Tansu broker, and a 300 s max poll interval so a worker
with a full buffer is not thrown out of the group (DESIGN.md, embedded stack facts).

Batching (:mod:`segstream.streams.batching`): the agent reads a manual-ack stream and only appends events to
a buffer; one task processes the buffered events a batch at a time, so faust keeps consuming while a batch
waits on Redis and Kafka. Offsets: a batch's events are acknowledged only after the pipeline has delivered
its outputs and finalized its state; faust commits acknowledged offsets. If the
pipeline fails in a way it cannot retry, the process exits at once (``os._exit``) so that nothing of the
failed batch is acknowledged or committed; the restarted worker sees those events again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from segstream.settings import Settings, WorkerSettings
from segstream.streams.batching import consume_in_batches
from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.campaign_triggers import RulesWatcher
from segstream.streams.faust_tuning import set_consumer_fetch_max_wait
from segstream.streams.heap import settle_heap
from segstream.streams.monitoring import DeadLetterWindow, FlapCounter, WorkerStats, monitoring_record
from segstream.streams.outputs import OutputBatch, Record, dumps, send_partition_batches
from segstream.streams.pipeline import BatchProcessor, ConsumedRecord, PipelineConfig
from segstream.streams.profiles import process_profiles
from segstream.streams.state import StateStore, open_store
from segstream.streams.sweep import sweep_once
from segstream.streams.web import WebContext, start_web
from segstream.streams.windows import ForecastRefresher

log = logging.getLogger("segstream.worker")

EXIT_UNRECOVERABLE = 70
BUNDLE_POLL_INTERVAL_S = 2.0
SWEEP_INTERVAL_S = 5.0


class FaustProducer:
    """The pipeline's :class:`~segstream.streams.outputs.BulkProducer` on faust's (aiokafka) producer."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._partitioner = KeyPartitioner()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Append to the producer's buffer; the returned future resolves on delivery."""
        return await self._app.producer.send(topic, key, value, None, None, None)

    async def send_many(self, topic: str, records: Sequence[Record]) -> list[tuple[Awaitable[Any], list[Record]]]:
        """One aiokafka record batch per partition instead of one ``send`` per record.

        ``send`` costs ~25 us per record in faust and aiokafka (metadata wait, murmur2 in Python, a future per
        record); a batch append costs a few. Partitions are those of aiokafka's default partitioner, so keyed
        records land where ``send`` would have put them, in the same order.
        """
        producer = self._app.producer._ensure_producer()  # the aiokafka producer faust wraps
        cluster = producer.client.cluster
        known = cluster.partitions_for_topic(topic)
        partitions = sorted(known if known else await producer.partitions_for(topic))
        available = sorted(cluster.available_partitions_for_topic(topic) or partitions)
        groups = self._partitioner.group(producer, topic, records, partitions, available)
        started: list[tuple[Awaitable[Any], list[Record]]] = []
        for partition, part in groups.items():
            started += await send_partition_batches(producer, topic, partition, part)
        return started


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key), remembered per key for hot customers."""

    MAX_REMEMBERED = 200_000

    def __init__(self) -> None:
        # (topic, partition count) -> key -> partition; a key's partition changes with the count.
        self._known: dict[tuple[str, int], dict[bytes, int]] = {}
        self._remembered = 0

    def group(
        self, producer: Any, topic: str, records: Sequence[Record], partitions: list[int], available: list[int]
    ) -> dict[int, list[Record]]:
        """The records by partition, each partition's in their order."""
        known = self._known.setdefault((topic, len(partitions)), {})
        groups: dict[int, list[Record]] = {}
        for record in records:
            key = record[0]
            partition = known.get(key) if key is not None else None
            if partition is None:
                partition = int(producer._partitioner(key, partitions, available))
                if key is not None:
                    if self._remembered >= self.MAX_REMEMBERED:
                        self._known.clear()
                        known = self._known.setdefault((topic, len(partitions)), {})
                        self._remembered = 0
                    known[key] = partition
                    self._remembered += 1
            found = groups.get(partition)
            if found is None:
                groups[partition] = [record]
            else:
                found.append(record)
        return groups


@dataclass
class WorkerRuntime:
    """Everything the agent, the timers and the web server share."""

    settings: Settings
    store: StateStore
    holder: ModelHolder
    stats: WorkerStats
    processor: BatchProcessor
    forecasts: ForecastRefresher
    lock: asyncio.Lock
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    app: Any = None

    def lag(self) -> dict[str, int] | None:
        """Messages behind the log end per input partition (None before partitions are assigned)."""
        consumer = getattr(self.app, "consumer", None) if self.app is not None else None
        if consumer is None:
            return None
        topic = self.settings.topics.transactions
        out: dict[str, int] = {}
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
            for tp in assigned:
                high = consumer.highwater(tp)
                if high is None:
                    continue
                done = self.stats.offsets.get((tp.topic, tp.partition))
                if done is None:
                    committed = getattr(consumer, "_committed_offset", {}).get(tp)
                    position = committed if committed is not None else 0
                else:
                    position = done + 1
                out[str(tp.partition)] = max(int(high) - int(position), 0)
        except Exception:  # lag is best effort; never let it break monitoring
            log.debug("could not compute consumer lag", exc_info=True)
            return None
        return out


def use_uvloop() -> str:
    """Make uvloop the event loop policy when uvloop is installed; returns the loop kind in use.

    The policy, not just this thread's loop: faust runs its Kafka consumer in a thread of its own whose
    loop comes from ``asyncio.new_event_loop()``, and that thread is a sixth of the worker's CPU.
    """
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    return "uvloop"


def faust_app_kwargs(settings: Settings) -> dict[str, Any]:
    """The worker's ``faust.App`` arguments (besides its id and data directory); the bench's ceiling and
    naive baseline use the same, so the ratios compare like with like."""
    return {
        **settings.kafka.faust_app_kwargs(),
        "web_enabled": False,
        "autodiscover": False,
        "store": "memory://",
        "topic_partitions": settings.topics.partitions,
        "consumer_auto_offset_reset": "earliest",
        "broker_max_poll_records": 5000,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": max(4 * settings.worker.batch_size, 4096),
        # No linger: a batch's records are handed over together anyway (send_many), and lingering only
        # delayed the delivery the batch waits for (measured 6-7 ms -> <1 ms per batch).
        "producer_linger_ms": 0,
        "producer_max_request_size": 2_000_000,
    }


def create_worker(
    settings: Settings, *, datadir: Path | None = None, store_url: str | None = None, web_host: str = "127.0.0.1"
) -> tuple[Any, WorkerRuntime]:
    """Build the faust app and its runtime from settings.

    Args:
        settings: All settings (Kafka, Redis, topics, models, worker).
        datadir: faust's data directory (default: ``<stack state dir>/../worker-<group id>``).
        store_url: Override the state store URL (default: the Redis URL from settings).
        web_host: Interface the HTTP endpoints listen on.

    Returns:
        The faust app and the runtime.
    """
    import faust

    w, topics = settings.worker, settings.topics
    set_consumer_fetch_max_wait(settings.kafka.fetch_max_wait_ms)
    data_dir = Path(datadir or Path(settings.stack.state_dir).parent / f"worker-{w.group_id}")
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    store = open_store(
        store_url or settings.redis.url,
        prefix=settings.redis.key_prefix,
        dedupe_ttl_s=settings.redis.dedupe_ttl_s,
        shards=settings.redis.shards,
        fold_cache=settings.redis.fold_cache_customers,
        fold=settings.redis.fold,
        **settings.redis.client_kwargs(),
    )
    key = settings.models.signing_key.get_secret_value().encode() if settings.models.signing_key else None
    holder = ModelHolder(settings.models.root, signing_key=key, require_signature=settings.models.require_signature)
    app = faust.App(w.group_id, datadir=str(data_dir), **faust_app_kwargs(settings))
    producer = FaustProducer(app)
    stats = worker_stats(w)
    lock = asyncio.Lock()
    config = PipelineConfig(
        scored_topic=topics.scored,
        changes_topic=topics.segment_changes,
        dead_letters_topic=topics.dead_letters,
        hysteresis=w.hysteresis_evaluations,
        dwell_days=w.dwell_days,
        inactivity_threshold_days=w.inactivity_threshold_days,
        limits=settings.event_limits(),
        crash_before_finalize_batch=w.failpoint_crash_before_finalize,
        sweep_page_delay_s=w.failpoint_sweep_page_delay_s,
        triggers_topic=topics.campaign_triggers,
        rules=RulesWatcher(w.campaign_rules) if w.campaign_rules else None,
    )
    runtime = WorkerRuntime(
        settings=settings,
        store=store,
        holder=holder,
        stats=stats,
        processor=BatchProcessor(store, producer, holder, config, stats, lock),
        # The lease outlives three refresh ticks: its holder renews it every tick, and when the holder dies
        # another worker takes over within three.
        forecasts=ForecastRefresher(store, producer, topics.sales_forecasts,
                                    lease_ms=int(3 * w.forecast_refresh_interval_s * 1000)),
        lock=lock,
        app=app,
    )
    source = app.topic(topics.transactions, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")  # fmt: skip

    @app.agent(source, name="segstream-score")
    async def score(stream: Any) -> None:
        await holder.wait_ready(BUNDLE_POLL_INTERVAL_S)
        settle_heap()  # the libraries and the model are loaded: keep full collections off them
        stats.gc.install()

        async def handle(events: Sequence[Any]) -> Awaitable[None]:
            return await _start_or_die(runtime, [e.message for e in events])

        try:
            await consume_in_batches(stream, w.batch_size, handle, on_failure=_exit_on_batch_loop_failure,
                                     backlog=lambda: sum((runtime.lag() or {}).values()))
        finally:
            stats.gc.uninstall()

    profile_source = app.topic(topics.customer_profiles, key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw")  # fmt: skip

    @app.agent(profile_source, name="segstream-profiles")
    async def profiles(stream: Any) -> None:
        await holder.wait_ready(BUNDLE_POLL_INTERVAL_S)

        async def handle(records: Sequence[Any]) -> Awaitable[None]:
            await process_profiles([r.message for r in records], store, holder, producer, config,
                                   lock=runtime.processor.exclusive, stats=stats)  # fmt: skip
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        await consume_in_batches(stream, w.batch_size, handle, on_failure=_exit_on_batch_loop_failure)

    @app.task
    async def start_http() -> None:
        token = w.customer_api_token.get_secret_value() if w.customer_api_token else None
        ctx = WebContext(store, holder, stats, runtime.lag, customer_token=token)
        try:
            await start_web(ctx, web_host, w.web_port)
        except OSError as exc:
            log.error("worker HTTP could not listen on %s:%d (%s); running without it", web_host, w.web_port, exc)

    @app.timer(BUNDLE_POLL_INTERVAL_S)
    async def poll_bundle() -> None:
        try:
            if await holder.poll_async() == "swapped":
                settle_heap()
        except Exception:  # the watcher must survive anything the filesystem throws at it
            log.exception("model bundle poll failed; keeping the active model")

    if config.rules is not None:
        rules = config.rules

        @app.timer(rules.check_every_s)
        async def poll_rules() -> None:
            # Batches check the file too; this timer makes a change (and a refusal) visible with no traffic.
            if holder.active is not None:
                try:
                    rules.campaigns(holder.active)
                except Exception:  # the watcher must survive anything the filesystem throws at it
                    log.exception("campaign rules poll failed; keeping the rules in use")

    @app.timer(SWEEP_INTERVAL_S)
    async def sweep() -> None:
        if holder.active is None:
            return
        await sweep_once(store, holder.active, producer, config, lock=runtime.processor.exclusive, stats=stats)

    @app.timer(w.monitoring_interval_s)
    async def monitor() -> None:
        await publish_monitoring(runtime, producer, topics.monitoring)

    @app.timer(w.forecast_refresh_interval_s)
    async def refresh_forecast() -> None:
        if holder.active is None:
            return
        started = time.perf_counter()
        try:
            if await runtime.forecasts.refresh_if_due(holder.active) is not None:
                stats.forecast_refreshes += 1
                stats.add_stage("forecast", time.perf_counter() - started)
        except Exception:  # a failed forecast must not stop scoring
            log.exception("forecast refresh failed; will try again next interval")

    return app, runtime


def worker_stats(w: WorkerSettings) -> WorkerStats:
    """The worker's counters, with the dead-letter alert configured from its settings."""
    return WorkerStats(
        dead_letter_window=DeadLetterWindow(w.dead_letter_alert_window_s),
        dead_letter_alert_share=w.dead_letter_alert_share,
        dead_letter_alert_min_events=w.dead_letter_alert_min_events,
        flaps=FlapCounter(w.flap_window_days),
    )


async def publish_monitoring(runtime: WorkerRuntime, producer: FaustProducer, topic: str) -> dict[str, Any]:
    """Build, log and publish one monitoring record."""
    active = runtime.holder.active
    try:
        watermark = await runtime.store.watermark()
    except Exception:  # report what we have even with the store down
        watermark = -1
    record = monitoring_record(
        runtime.stats,
        model_version=active.version if active else None,
        training_mix=active.serving.training_mix if active else None,
        lag=runtime.lag(),
        watermark_ms=watermark,
        events_per_s=runtime.stats.rate_since_last(),
        worker_id=runtime.worker_id,
    )
    log.info(
        "processed=%d (%.0f/s) dead_letters=%d (%.1f%% of the last %ds) duplicates=%d changes=%d lag=%s psi=%s",
        record["processed"], record["events_per_s"], record["dead_letters"], 100 * record["dead_letter_share"],
        record["dead_letter_window_s"], record["duplicates_skipped"], record["segment_changes"],
        record["consumer_lag"], record["drift_psi"],
    )  # fmt: skip
    out = OutputBatch(producer)
    await out.send(topic, runtime.worker_id.encode(), dumps(record))
    await out.wait_all()
    return record


def _exit_on_batch_loop_failure(exc: BaseException | None) -> None:
    """The batch loop only ends by cancellation; anything else would leave the worker consuming nothing."""
    log.critical("the batch loop stopped; exiting WITHOUT committing", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_UNRECOVERABLE)


async def _start_or_die(runtime: WorkerRuntime, batch: list[ConsumedRecord]) -> Awaitable[None]:
    """Start a batch; the returned task finishes it. Any failure in either phase ends the process."""
    try:
        finishing = await runtime.processor.start(batch)
    except asyncio.CancelledError:
        raise
    except BaseException:
        _die(batch)
    return asyncio.ensure_future(_finish_or_die(finishing, batch))


async def _finish_or_die(finishing: Awaitable[Any], batch: list[ConsumedRecord]) -> None:
    try:
        await finishing
    except asyncio.CancelledError:
        raise
    except BaseException:
        _die(batch)


def _die(batch: list[ConsumedRecord]) -> NoReturn:
    first, last = batch[0], batch[-1]
    log.critical(
        "unrecoverable error processing %d events (%s[%d]@%d .. %s[%d]@%d); exiting WITHOUT committing "
        "so they are processed again after a restart",
        len(batch), first.topic, first.partition, first.offset, last.topic, last.partition, last.offset,
        exc_info=True,
    )  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_UNRECOVERABLE)


def run_worker(app: Any, loglevel: str = "info") -> None:
    """Run the faust worker in the foreground until SIGINT/SIGTERM."""
    from faust.worker import Worker

    worker = quiet_worker(Worker(app, loglevel=loglevel, loop=asyncio.get_event_loop(), redirect_stdouts=False))
    worker.execute_from_commandline()


def quiet_worker(worker: Any) -> Any:
    """Drop faust's terminal spinner, which costs every library's debug logging at warning level and above.

    At ``--loglevel warning`` (or error) faust's Worker hangs a spinner handler on the root logger and sets
    the root to DEBUG, so every ``log.debug`` in aiokafka (one per produced message) builds a record and runs
    the handlers; measured at ~5% of the worker's CPU.
    """
    worker.spinner = None
    return worker
