"""OutputBatch's bulk path, the worker's key partitioner and the output timestamps."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.contract import DEFAULT_MAX_TIMESTAMP_MS as MAX_TIMESTAMP_MS
from segstream.models.contract import DEFAULT_MIN_TIMESTAMP_MS as MIN_TIMESTAMP_MS
from segstream.streams.app import KeyPartitioner
from segstream.streams.outputs import OutputBatch, Record, change_payload, iso_ms, send_partition_batches
from segstream.streams.state.base import SegmentChange


class BulkFake:
    """Hands batches out per key; the first ``fail_batches`` batch deliveries fail."""

    def __init__(self, fail_batches: int = 0, refuse_bulk: bool = False) -> None:
        self.fail_batches = fail_batches
        self.refuse_bulk = refuse_bulk
        self.delivered: list[tuple[str, bytes | None, bytes]] = []
        self.single_sends = 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        self.single_sends += 1
        self.delivered.append((topic, key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_many(self, topic: str, records: list[Record]) -> list[tuple[Any, list[Record]]]:
        if self.refuse_bulk:
            raise RuntimeError("buffer full")
        out = []
        for i in range(0, len(records), 3):  # batches of three, like per-partition batches
            part = list(records[i : i + 3])
            future = asyncio.get_running_loop().create_future()
            if self.fail_batches > 0:
                self.fail_batches -= 1
                future.set_exception(ConnectionError("broker went away"))
            else:
                self.delivered.extend((topic, k, v) for k, v in part)
                future.set_result(None)
            out.append((future, part))
        return out


def _records(n: int) -> list[Record]:
    return [(f"c{i % 4}".encode(), f"v{i}".encode()) for i in range(n)]


def test_bulk_sends_deliver_every_record_once_and_count_them():
    async def go() -> tuple[BulkFake, OutputBatch]:
        fake = BulkFake()
        out = OutputBatch(fake)
        await out.send_many("scored", _records(10))
        await out.send_many("changes", [])
        await out.wait_all()
        return fake, out

    fake, out = asyncio.run(go())
    assert [v for _, _, v in fake.delivered] == [r[1] for r in _records(10)]
    assert fake.single_sends == 0
    assert out.counts == {"scored": 10}


def test_a_failed_batch_delivery_is_sent_again_record_by_record_before_wait_all_returns():
    async def go() -> BulkFake:
        fake = BulkFake(fail_batches=1)
        out = OutputBatch(fake)
        await out.send_many("scored", _records(7))
        await out.wait_all()
        return fake

    fake = asyncio.run(go())
    assert sorted(v for _, _, v in fake.delivered) == sorted(r[1] for r in _records(7))
    assert fake.single_sends == 3  # the failed batch of three, resent one by one


def test_a_refused_bulk_send_falls_back_to_single_sends():
    async def go() -> BulkFake:
        fake = BulkFake(refuse_bulk=True)
        out = OutputBatch(fake)
        await out.send_many("scored", _records(5))
        await out.wait_all()
        return fake

    fake = asyncio.run(go())
    assert fake.single_sends == 5
    assert [v for _, _, v in fake.delivered] == [r[1] for r in _records(5)]


class _Producer:
    _partitioner = DefaultPartitioner()


def _partition_of(partitioner: KeyPartitioner, key: bytes, partitions: list[int]) -> int:
    groups = partitioner.group(_Producer(), "t", [(key, b"v")], partitions, partitions)
    assert len(groups) == 1
    return next(iter(groups))


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=40), n=st.integers(1, 64))
def test_key_partitioner_agrees_with_aiokafkas_default_partitioner(key, n):
    partitions = list(range(n))
    expected = DefaultPartitioner()(key, partitions, partitions)
    remembered = KeyPartitioner()
    assert _partition_of(remembered, key, partitions) == expected
    assert _partition_of(remembered, key, partitions) == expected  # from memory now


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.one_of(st.none(), st.binary(min_size=1, max_size=8)), max_size=60), n=st.integers(1, 8))
def test_key_partitioner_groups_records_by_partition_in_order(keys, n):
    partitions = list(range(n))
    records = [(key, str(i).encode()) for i, key in enumerate(keys)]
    producer = _Producer()
    groups = KeyPartitioner().group(producer, "t", records, partitions, partitions)
    grouped = [r for part in groups.values() for r in part]
    assert sorted(grouped, key=lambda r: r[1]) == sorted(records, key=lambda r: r[1])
    for partition, part in groups.items():
        assert part == [r for r in records if r in part]  # each partition keeps the records' order
        assert all(DefaultPartitioner()(key, partitions, partitions) == partition for key, _ in part if key)


def test_key_partitioner_forgets_when_full_and_keeps_answering():
    remembered = KeyPartitioner()
    remembered.MAX_REMEMBERED = 5
    partitions = [0, 1, 2, 3]
    answers = [_partition_of(remembered, f"k{i}".encode(), partitions) for i in range(12)]
    assert answers == [DefaultPartitioner()(f"k{i}".encode(), partitions, partitions) for i in range(12)]
    assert sum(len(keys) for keys in remembered._known.values()) <= 5


class _SizedBatch:
    """Holds records until their values add up to more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.records: list[Record] = []
        self._limit = limit

    def append(self, *, key: bytes | None, value: bytes, timestamp: None) -> object | None:
        if sum(len(v) for _, v in self.records) + len(value) > self._limit:
            return None
        self.records.append((key, value))
        return object()


class _BatchingProducer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.shipped: list[tuple[str, int, list[Record]]] = []

    def create_batch(self) -> _SizedBatch:
        return _SizedBatch(self.limit)

    async def send_batch(self, batch: _SizedBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.shipped.append((topic, partition, list(batch.records)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_partition_batches_ship_in_order_a_new_batch_whenever_one_is_full():
    producer = _BatchingProducer(limit=10)
    records: list[Record] = [(b"k", b"abcd"), (b"k", b"efgh"), (b"k", b"ijkl"), (b"k", b"m")]
    started = asyncio.run(send_partition_batches(producer, "t", 3, records))
    assert [members for _, members in started] == [records[:2], records[2:]]
    assert [(t, p, r) for t, p, r in producer.shipped] == [("t", 3, records[:2]), ("t", 3, records[2:])]


def test_a_record_larger_than_an_empty_batch_is_an_error_not_dropped():
    producer = _BatchingProducer(limit=10)
    with pytest.raises(ValueError, match="larger than the producer's request size"):
        asyncio.run(send_partition_batches(producer, "t", 0, [(b"k", b"ab"), (b"k", b"x" * 11)]))


@settings(max_examples=500, deadline=None)
@given(ts_ms=st.integers(MIN_TIMESTAMP_MS - 10**12, MAX_TIMESTAMP_MS))
def test_iso_ms_equals_the_datetime_rendering(ts_ms):
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts_ms)
    assert iso_ms(ts_ms) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    assert iso_ms(ts_ms) == iso_ms(ts_ms)  # from the day cache now


def test_change_payload_takes_the_batch_emission_time():
    change = SegmentChange("c1", None, 2, "v1", 1_766_956_076_123, "purchase", "e1", {"recency_days": 1.0})
    payload = json.loads(change_payload(change, {2: "Champions"}, "2026-01-01T00:00:00.000Z"))
    assert payload["emitted_at"] == "2026-01-01T00:00:00.000Z"
    assert payload["event_time"] == "2025-12-28T21:07:56.123Z" and payload["segment_name"] == "Champions"
    assert json.loads(change_payload(change, {}))["emitted_at"].endswith("Z")


def test_change_payload_carries_both_segment_descriptions():
    change = SegmentChange("c1", 4, 2, "v1", 1_766_956_076_123, "purchase", "e1", {"recency_days": 1.0})
    about = {2: "typically bought 10 times, last purchase 3 days ago", 4: "bought once, last purchase 16 months ago"}
    payload = json.loads(change_payload(change, {2: "Champions", 4: "Lost"}, descriptions=about))
    assert payload["segment_description"] == about[2]
    assert payload["previous_segment_description"] == about[4]
    bare = json.loads(change_payload(change, {2: "Champions"}))
    assert bare["segment_description"] is None and bare["previous_segment_description"] is None
