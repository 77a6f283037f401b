"""Produce -> scored latency at a fixed offered rate.

Events are produced at ``rate`` per second for ``seconds`` with their send time (``time.time_ns()``) in
the payload field ``bench_sent_ns``; the worker passes unknown fields through to ``transactions.scored``,
where a consumer reading from the log end notes when each one arrives. Producer and consumer share one
event loop (uvloop when installed) in the bench process; both clocks are this machine's wall clock.
The first ``warmup_s`` seconds of sends are left out of the percentiles.
"""

from __future__ import annotations

import asyncio
import time
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
    # records arrive (see segstream.bench.launch), which would add up to 500 ms of our own to every sample.
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
        received: dict[str, float] = {}
        sent_at: dict[str, int] = {}

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
                        if eid in sent_at and "bench_sent_ns" in value:
                            received.setdefault(eid, (now_ns - int(value["bench_sent_ns"])) / 1e6)

        reader = asyncio.ensure_future(receive())
        cpu_before = time.process_time()
        started = time.perf_counter()
        futures = await _offer(producer, source, workload, rate, total, run_id, sent_at, started, first)
        offered_s = time.perf_counter() - started
        await asyncio.gather(*futures)
        try:
            await asyncio.wait_for(reader, timeout=drain_s)
        except TimeoutError:
            pass
        # This process is a load on the same cores as the worker: say how much.
        generator_cpu = 100 * (time.process_time() - cpu_before) / max(time.perf_counter() - started, 1e-9)
        warm = int(rate * warmup_s)
        kept = [ms for eid, ms in received.items() if sent_at.get(eid, 0) >= warm]
        return {
            "offered_rate_eps": rate,
            "achieved_offer_eps": total / offered_s if offered_s > 0 else None,
            "sent": total,
            "received": len(received),
            "warmup_s": warmup_s,
            "samples": len(kept),
            "load_generator_cpu_percent": generator_cpu,
            "latency_ms": percentiles(kept),
        }
    finally:
        await producer.stop()
        await consumer.stop()


async def _offer(producer: Any, topic: str, workload: Workload, rate: float, total: int, run_id: str,
                 sent_at: dict[str, int], started: float, first: int = 0) -> list[Any]:  # fmt: skip
    """Produce ``total`` events at ``rate``: every ``SEND_TICK_S`` the events due so far, one batch per partition.

    The events are follow-ups ``first`` to ``first + total - 1``, so successive calls send new event ids with
    later timestamps; ``sent_at`` maps each id to its position in this call (0 for the first sent).

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
        for j in range(i, due_now):
            rec = follow_up_record(workload, first + j, run_id, start_ns + int(1e9 * j / rate))
            sent_at[rec["event_id"]] = j
            key = str(rec["customer_id"]).encode()
            groups.setdefault(partition_of(key, partitions, partitions), []).append((key, orjson.dumps(rec)))
        i = due_now
        for partition, part in groups.items():
            futures += [sent for sent, _ in await send_partition_batches(producer, topic, partition, part)]
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter(), SEND_TICK_S))
    return futures


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
        ``offered_rate_eps``, ``achieved_offer_eps``, ``sent``, ``received``, ``samples`` and
        ``latency_ms`` (``p50``, ``p95``, ``p99``, ``max``).
    """
    coro = _measure(kafka, source, scored, workload, rate, seconds, run_id, warmup_s, drain_s, first)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
