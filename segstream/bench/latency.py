"""Produce -> scored latency at a fixed offered rate.

Events are produced at ``rate`` per second for ``seconds`` with their send time (``time.time_ns()``) in
the payload field ``bench_sent_ns``; the worker passes unknown fields through to ``transactions.scored``,
where a consumer reading from the log end notes when each one arrives. Producer and consumer share one
event loop (uvloop when installed) in the bench process; both clocks are this machine's wall clock.
The first ``warmup_s`` seconds of sends are left out of the percentiles.

Each sample is also split where its time went (:func:`latency_stages`), from four readings of the same wall
clock: when the event was due, when the generator's tick handed it to the client, the scored record's
Kafka timestamp (set by the worker's producer as it appends the record, after the Redis update and scoring)
and when the bench's consumer read it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

from segstream.bench.workload import Workload, follow_up_record
from segstream.settings import KafkaSettings

# The generator sends what is due every 20 ms, like a producer with a 20 ms linger (each event's latency counts
# from when it was due, so the wait is included). Why not 5 ms: the embedded Tansu 0.6.0 broker (memory
# storage) spends CPU on every request in proportion to the record batches a partition holds. Measured alone
# with one consumer at 3,500 events/s: a 5 ms linger grew the broker from 38% to 97% of a core in 36 s, a 50 ms
# linger held it at 13-17%. In the bench, 5 ms ticks took it from ~28% to ~60% within the 10 s phase, on the
# worker's two cores, and p99 was 290-480 ms; with 20 ms ticks it stayed at 27-39% and p99 was 205 ms.
SEND_TICK_S = 0.020


# A sample's clocks: (due_ns, handed_ns, scored_stamp_ms, read_ns); see latency_stages.
Sample = tuple[int, int, int, int]
STAGES = ("generator", "to_scored", "to_read")


def latency_stages(samples: Iterable[Sample]) -> dict[str, dict[str, float | None]]:
    """Percentiles (ms) of each part of produce -> scored, per stage:

    * ``generator``: due -> handed to the Kafka client by the generator's tick (the linger, by design);
    * ``to_scored``: handed over -> the scored record's timestamp: the produce request, the broker, the
      worker's fetch, faust, the wait for a batch to start, the Redis update and scoring;
    * ``to_read``: that timestamp -> read by the bench's consumer: the scored record's produce request, the
      broker and the bench's own fetch.

    The Kafka timestamp has millisecond resolution, so a stage can come out a millisecond short (or negative).
    Each stage's percentiles are of that stage alone: they do not add up to the total's.
    """
    parts: dict[str, list[float]] = {name: [] for name in STAGES}
    for due_ns, handed_ns, stamp_ms, read_ns in samples:
        stamp_ns = stamp_ms * 1_000_000
        parts["generator"].append((handed_ns - due_ns) / 1e6)
        parts["to_scored"].append((stamp_ns - handed_ns) / 1e6)
        parts["to_read"].append((read_ns - stamp_ns) / 1e6)
    return {name: {**percentiles(values), "mean": float(np.mean(values)) if values else None}
            for name, values in parts.items()}  # fmt: skip


def percentiles(latencies_ms: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max (None when there are no samples)."""
    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}


async def _measure(kafka: KafkaSettings, source: str, scored: str, workload: Workload, rate: float,
                   seconds: float, run_id: str, warmup_s: float, drain_s: float,
                   first: int) -> dict[str, Any]:  # fmt: skip
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    # A short fetch wait: the embedded broker holds a multi-partition fetch for the whole wait even when
    # records arrive (see segstream.streams.faust_tuning), which would add up to 500 ms of our own to every sample.
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka_kwargs(), enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10
    )
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), linger_ms=0, acks=1)
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()  # fetches metadata, so partitions_for_topic knows the topic
        partitions = consumer.partitions_for_topic(scored) or set()
        tps = [TopicPartition(scored, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        prefix = f"{run_id}-lat-"
        marker = prefix.encode()
        total = max(1, int(rate * seconds))
        sent_at: dict[str, int] = {}
        handed_ns: dict[str, int] = {}
        received: dict[str, tuple[int, int, int]] = {}  # event id -> (due_ns, scored_stamp_ms, read_ns)

        async def receive() -> None:
            while len(received) < total:
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                now_ns = time.time_ns()
                for records in batches.values():
                    for rec in records:
                        if marker not in rec.value:  # not ours: skip the decode
                            continue
                        value = orjson.loads(rec.value)
                        eid = value.get("event_id", "")
                        # sent_at holds only this call's events: a late record of an earlier call is not one
                        if eid in sent_at and "bench_sent_ns" in value and eid not in received:
                            received[eid] = (int(value["bench_sent_ns"]), rec.timestamp, now_ns)

        reader = asyncio.ensure_future(receive())
        cpu_before = time.process_time()
        started = time.perf_counter()
        futures = await _offer(producer, source, workload, rate, total, run_id, sent_at, started, first, handed_ns)
        offered_s = time.perf_counter() - started
        await asyncio.gather(*futures)
        try:
            await asyncio.wait_for(reader, timeout=drain_s)
        except TimeoutError:
            pass
        # This process is a load on the same cores as the worker: say how much.
        generator_cpu = 100 * (time.process_time() - cpu_before) / max(time.perf_counter() - started, 1e-9)
        warm = int(rate * warmup_s)
        kept = [(e, *clocks) for e, clocks in received.items() if sent_at.get(e, 0) >= warm]
        latencies = [(read_ns - due_ns) / 1e6 for _, due_ns, _, read_ns in kept]
        stages = latency_stages((due_ns, handed_ns[e], stamp_ms, read_ns) for e, due_ns, stamp_ms, read_ns in kept)
        return {
            "offered_rate_eps": rate,
            "achieved_offer_eps": total / offered_s if offered_s > 0 else None,
            "sent": total,
            "received": len(received),
            "warmup_s": warmup_s,
            "samples": len(kept),
            "load_generator_cpu_percent": generator_cpu,
            "latency_ms": percentiles(latencies),
            "stages_ms": stages,
        }
    finally:
        await producer.stop()
        await consumer.stop()


async def _offer(producer: Any, topic: str, workload: Workload, rate: float, total: int, run_id: str,
                 sent_at: dict[str, int], started: float, first: int = 0,
                 handed_ns: dict[str, int] | None = None) -> list[Any]:  # fmt: skip
    """Produce ``total`` events at ``rate``: every ``SEND_TICK_S`` the events due so far, one batch per partition.

    The events are follow-ups ``first`` to ``first + total - 1``, so successive calls send new event ids with
    later timestamps; ``sent_at`` maps each id to its position in this call (0 for the first sent) and, when
    given, ``handed_ns`` to when its tick handed it to the client.

    One aiokafka ``send`` per event cost this process ~25 us of CPU, and the generator is a fourth busy
    process on the worker's two cores; a batch append costs a few. Each event carries the wall-clock time
    it was *due* (not when its tick sent it), so the up to ``SEND_TICK_S`` it waited counts in its latency,
    as a producer's linger would.
    """
    from aiokafka.partitioner import DefaultPartitioner

    from segstream.streams.outputs import send_partition_batches

    partitions = sorted(await producer.partitions_for(topic))
    partition_of = DefaultPartitioner()
    start_ns = time.time_ns() - int(1e9 * (time.perf_counter() - started))
    futures: list[Any] = []
    i = 0
    while i < total:
        due_now = min(total, int((time.perf_counter() - started) * rate) + 1)
        groups: dict[int, list[tuple[bytes, bytes]]] = {}
        ids: list[str] = []
        for j in range(i, due_now):
            rec = follow_up_record(workload, first + j, run_id, start_ns + int(1e9 * j / rate))
            sent_at[rec["event_id"]] = j
            ids.append(rec["event_id"])
            key = str(rec["customer_id"]).encode()
            groups.setdefault(partition_of(key, partitions, partitions), []).append((key, orjson.dumps(rec)))
        if handed_ns is not None:
            handed = time.time_ns()
            for eid in ids:
                handed_ns[eid] = handed
        i = due_now
        for partition, part in groups.items():
            futures += [sent for sent, _ in await send_partition_batches(producer, topic, partition, part)]
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter(), SEND_TICK_S))
    return futures


@contextmanager
def no_collector_pauses() -> Iterator[None]:
    """Keep this process's cyclic garbage collector out of a measurement, as ``timeit`` does.

    The generator and the reader are stand-ins for clients on other machines, but they run in the bench process,
    which holds the workload and the per-event bookkeeping (millions of objects). A full collection there took
    136 ms in the middle of a phase (2026-11-29): no event was handed over meanwhile, the tick stage's p99 went
    from 22 to 154 ms for that half second, and that half second held the phase's worst latency (p99 255 ms;
    the phase's 187 ms): a pause of the measuring process charged to the worker. The heap is frozen and
    collection is off for the measurement; reference counting still frees everything that is not a cycle.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()


def measure_latency(
    kafka: KafkaSettings,
    source: str,
    scored: str,
    workload: Workload,
    rate: float,
    seconds: float,
    run_id: str,
    warmup_s: float = 1.0,
    drain_s: float = 30.0,
    first: int = 0,
) -> dict[str, Any]:
    """Offer ``rate`` events/s for ``seconds`` to ``source``; return percentiles of produce -> scored.

    ``first`` is the index of the first follow-up event: a later call on the same topics passes the number
    of events sent before it, so its events are new to the worker (not duplicates) and come later in event time.

    Returns:
        ``offered_rate_eps``, ``achieved_offer_eps``, ``sent``, ``received``, ``samples``,
        ``latency_ms`` (``p50``, ``p95``, ``p99``, ``max``) and ``stages_ms`` (:func:`latency_stages`).
    """
    coro = _measure(kafka, source, scored, workload, rate, seconds, run_id, warmup_s, drain_s, first)
    with no_collector_pauses():
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
