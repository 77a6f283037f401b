"""The latency phase's load generator: every event once, in ticks, on its key's partition, stamped when due."""

from __future__ import annotations

import asyncio
import gc
import time

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from segstream.bench.latency import (
    SEND_TICK_S,
    STAGES,
    _offer,
    latency_stages,
    no_collector_pauses,
    percentiles,
)
from segstream.bench.workload import Workload


class _Batch:
    def __init__(self, room: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self._room = room

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if len(self.records) >= self._room:
            return None
        self.records.append((key, value))
        return object()


class _Producer:
    """Records every batch shipped, with its partition and when it was shipped."""

    def __init__(self, room: int = 3) -> None:
        self.shipped: list[tuple[int, float, list[tuple[bytes, bytes]]]] = []
        self._room = room

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> _Batch:
        return _Batch(self._room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.shipped.append((partition, time.time_ns(), list(batch.records)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _workload() -> Workload:
    records = [{"event_id": f"w{i}", "customer_id": f"C{i % 7}", "timestamp": 1_735_689_600_000 + i, "amount": 1.0}
               for i in range(20)]  # fmt: skip
    return Workload(records, [r["customer_id"].encode() for r in records], [], 7, 0.0)


def test_offer_sends_each_event_once_on_its_partition_stamped_with_when_it_was_due():
    producer, sent_at, handed, rate, total = _Producer(), {}, {}, 2000.0, 300

    async def go():
        started = time.perf_counter()
        return await _offer(producer, "in", _workload(), rate, total, "run", sent_at, started, 0, handed), started

    futures, _ = asyncio.run(go())
    assert len(futures) == len(producer.shipped)
    values = [orjson.loads(v) for _, _, batch in producer.shipped for _, v in batch]
    assert sorted(sent_at.values()) == list(range(total))
    assert sorted(v["event_id"] for v in values) == sorted(f"run-lat-{i}" for i in range(total))
    partition_of = DefaultPartitioner()
    for partition, shipped_ns, batch in producer.shipped:
        assert 1 <= len(batch) <= 3  # a full batch is shipped and another started
        for key, value in batch:
            assert partition == partition_of(key, [0, 1, 2, 3], [0, 1, 2, 3])
            value = orjson.loads(value)
            assert value["bench_sent_ns"] <= shipped_ns  # due before (or when) its tick sent it
            # handed to the client at its tick: after it was due, before the batch holding it was shipped
            assert value["bench_sent_ns"] <= handed[value["event_id"]] <= shipped_ns
    by_id = {v["event_id"]: v["bench_sent_ns"] for v in values}
    stamps = [by_id[f"run-lat-{i}"] for i in range(total)]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(abs(g - 1e9 / rate) <= 1 for g in gaps)  # due times follow the offered rate exactly


def test_offer_ships_one_batch_per_partition_per_tick():
    producer, rate, total = _Producer(room=10_000), 2000.0, 300

    async def go():
        await _offer(producer, "in", _workload(), rate, total, "run", {}, time.perf_counter())

    asyncio.run(go())
    ticks = total / rate / SEND_TICK_S + 2  # the first event goes at once; allow one late tick
    assert sum(len(batch) for _, _, batch in producer.shipped) == total
    assert len(producer.shipped) <= 4 * ticks  # not one request per event


def test_a_later_call_sends_new_events_later_in_event_time():
    producer, first_sent, later_sent = _Producer(room=10_000), {}, {}

    async def go():
        await _offer(producer, "in", _workload(), 2000.0, 30, "run", first_sent, time.perf_counter())
        await _offer(producer, "in", _workload(), 2000.0, 30, "run", later_sent, time.perf_counter(), first=30)

    asyncio.run(go())
    values = [orjson.loads(v) for _, _, batch in producer.shipped for _, v in batch]
    assert len({v["event_id"] for v in values}) == 60  # no id repeats, so the worker sees no duplicates
    by_id = {v["event_id"]: v["timestamp"] for v in values}
    assert min(by_id[e] for e in later_sent) > max(by_id[e] for e in first_sent)
    assert sorted(later_sent.values()) == list(range(30))  # positions within the call: the warm-up cut applies


def test_percentiles_of_nothing_and_of_samples():
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    out = percentiles([float(i) for i in range(1, 101)])
    assert out["max"] == 100.0 and 50 <= out["p50"] <= 51 and 99 <= out["p99"] <= 100


def test_latency_stages_split_each_sample_at_the_handover_and_the_scored_timestamp():
    ms = 1_000_000
    samples = [(0, 10 * ms, 40, 52 * ms), (5 * ms, 5 * ms, 30, 41 * ms)]  # due, handed, scored stamp (ms), read
    stages = latency_stages(samples)
    assert list(stages) == list(STAGES)
    assert stages["generator"]["max"] == 10.0 and stages["generator"]["mean"] == 5.0
    assert stages["to_scored"]["max"] == 30.0 and stages["to_scored"]["mean"] == 27.5
    assert stages["to_read"]["max"] == 12.0 and stages["to_read"]["mean"] == 11.5
    assert latency_stages([])["to_scored"] == {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}


@given(st.lists(st.tuples(*[st.integers(0, 10**6)] * 4), min_size=1, max_size=50))
def test_the_stages_of_a_sample_add_up_to_its_latency(parts):
    """Each sample's three stages sum to read - due, whatever the clocks say."""
    ms = 1_000_000
    for generator, to_scored, to_read, due in parts:
        handed = due + generator
        stamp_ms = (handed + to_scored * ms) // ms + 1  # a stamp in whole milliseconds, as Kafka's
        read = stamp_ms * ms + to_read
        stages = latency_stages([(due, handed, stamp_ms, read)])
        total = sum(stages[name]["max"] for name in STAGES)
        assert total == pytest.approx((read - due) / 1e6)


def test_no_collector_pauses_during_a_measurement_and_the_collector_restored_after():
    assert gc.isenabled()
    with no_collector_pauses():
        assert not gc.isenabled() and gc.get_freeze_count() > 0  # the heap so far is out of every collection
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), no_collector_pauses():
        raise RuntimeError("a failed measurement")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with no_collector_pauses():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()
