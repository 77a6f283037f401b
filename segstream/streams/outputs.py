"""What the worker writes to Kafka: payload builders for every output topic, and a batch of sends.

Sends are started without waiting for each delivery; :meth:`OutputBatch.wait_all` awaits them all before
the batch's state is finalized and its offsets acknowledged, so outputs are at-least-once. A send that
failed is sent again (with back-off) until it is delivered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from segstream.models.events import Event
from segstream.models.features import DAY_MS
from segstream.streams.retry import retry_transient
from segstream.streams.state.base import SegmentChange

log = logging.getLogger("segstream.worker")

# Keep a dead letter well below Kafka's default 1 MB message limit, however large the bad input was.
MAX_DEAD_LETTER_RAW = 128 * 1024


class Producer(Protocol):
    """The worker's producer: start one send and return an awaitable for its delivery."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Hand one record to the client's buffer; the returned awaitable completes on delivery."""
        ...


Record = tuple[bytes | None, bytes]


class BulkProducer(Producer, Protocol):
    """A producer that can also hand many records of one topic to the client at once."""

    async def send_many(self, topic: str, records: Sequence[Record]) -> list[tuple[Awaitable[Any], list[Record]]]:
        """Start sending ``records`` in order per key; returns each delivery awaitable with the records it covers."""
        ...


async def send_partition_batches(
    producer: Any, topic: str, partition: int, records: Sequence[Record]
) -> list[tuple[Awaitable[Any], list[Record]]]:
    """Hand ``records`` to an aiokafka producer as record batches for one partition, in order.

    A new batch starts whenever one is full. Returns each batch's delivery future with the records it holds.

    Raises:
        ValueError: A record does not fit even in an empty batch (larger than the producer's request size).
    """
    started: list[tuple[Awaitable[Any], list[Record]]] = []
    batch, members = producer.create_batch(), list[Record]()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it, start another
            started.append((await producer.send_batch(batch, topic, partition=partition), members))
            batch, members = producer.create_batch(), list[Record]()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record for {topic} is larger than the producer's request size")
        members.append((key, value))
    started.append((await producer.send_batch(batch, topic, partition=partition), members))
    return started


class OutputBatch:
    """The sends of one batch: started at once, awaited together."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: list[tuple[Awaitable[Any], str, bytes | None, bytes]] = []
        self._pending_many: list[tuple[Awaitable[Any], str, list[Record]]] = []
        self.counts: dict[str, int] = {}

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        """Start sending many records to one topic (in per-partition batches when the producer can)."""
        if not records:
            return
        bulk = getattr(self._producer, "send_many", None)
        started: list[tuple[Awaitable[Any], list[Record]]] | None = None
        if bulk is not None:
            try:
                started = await bulk(topic, records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the client refused a batch: fall back to single sends, which retry
                log.warning("bulk send to %s failed (%r); sending one by one", topic, exc)
        if started is None:
            for key, value in records:
                await self.send(topic, key, value)
            return
        self._pending_many.extend((future, topic, part) for future, part in started)
        self.counts[topic] = self.counts.get(topic, 0) + len(records)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Start one send (does not wait for delivery)."""
        try:
            future = await self._producer.send(topic, key, value)
        except asyncio.CancelledError:
            raise
        except Exception:  # the client's buffer refused it (e.g. broker gone): retry with back-off
            future = await retry_transient(lambda: self._producer.send(topic, key, value), f"send to {topic}")
        self._pending.append((future, topic, key, value))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    async def wait_all(self) -> None:
        """Wait until every send of the batch is delivered, re-sending any that failed."""
        pending, self._pending = self._pending, []
        many, self._pending_many = self._pending_many, []
        for future, topic, part in many:
            try:
                await future
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a whole partition batch failed: its records go again, one by one
                log.warning("delivery of %d records to %s failed (%r); sending again", len(part), topic, exc)
                for key, value in part:
                    await self._resend(topic, key, value)
        # Awaited one by one: deliveries complete in broker batches, so most are done by the time we get to
        # them, and awaiting a done future is far cheaper than gather's per-future bookkeeping.
        for future, topic, key, value in pending:
            try:
                await future
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any delivery failure: send it again before the batch may commit
                log.warning("delivery to %s failed (%r); sending again", topic, exc)
                await self._resend(topic, key, value)

    async def _resend(self, topic: str, key: bytes | None, value: bytes) -> None:
        delay = 0.1
        while True:
            try:
                await (await self._producer.send(topic, key, value))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any delivery failure: the record must get out before the commit
                log.warning("re-send to %s failed (%r); retrying in %.1fs", topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with millisecond precision, e.g. ``2025-01-02T03:04:05.006Z``.

    Integer arithmetic and a cache of day strings: the datetime round trip was ~2.3 us, once per change.
    """
    day, ms_of_day = divmod(ts_ms, DAY_MS)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= _MAX_DATES:
            _DATES.clear()
        date = _DATES[day] = (_EPOCH + timedelta(days=day)).date().isoformat()
    seconds, ms = divmod(ms_of_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{date}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATES: dict[int, str] = {}
_MAX_DATES = 4096


def now_iso() -> str:
    """The current UTC time as ISO 8601."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes (non-finite floats become null: JSON has no NaN).

    orjson on the hot path (~5x faster than json for a scored event); json for what orjson refuses
    (integers beyond 64 bits, lone surrogates).
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":")).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def scored_payload(
    event: Event, segment: int | None, segment_name: str | None, model_version: str, scored_at: str
) -> bytes:
    """``transactions.scored``: the input event (unknown fields included) plus the segment it scored."""
    out = dict(event.payload)
    out["segment"] = segment
    out["segment_name"] = segment_name
    out["model_version"] = model_version
    out["scored_at"] = scored_at
    return dumps(out)


def change_payload(
    change: SegmentChange,
    names: Mapping[int, str],
    emitted_at: str | None = None,
    descriptions: Mapping[int, str] | None = None,
) -> bytes:
    """``segment-changes``: previous and new segment with names and descriptions, version, time, cause,
    trigger, features.

    ``emitted_at`` defaults to now; a batch passes one time for all its changes. ``descriptions`` are the
    bundle's one-line segment descriptions (None where a bundle has none).
    """
    return dumps(change_fields(change, names, descriptions, emitted_at or now_iso()))


def change_fields(
    change: SegmentChange, names: Mapping[int, str], descriptions: Mapping[int, str] | None, emitted_at: str
) -> dict[str, Any]:
    """The ``segment-changes`` record as a dict; ``campaign-triggers`` records carry the same fields."""
    prev = change.previous_segment
    about = descriptions or {}
    return {
        "change_id": change.change_id,
        "customer_id": change.customer_id,
        "previous_segment": prev,
        "previous_segment_name": None if prev is None else names.get(prev, f"segment {prev}"),
        "segment": change.segment,
        "segment_name": names.get(change.segment, f"segment {change.segment}"),
        "previous_segment_description": None if prev is None else about.get(prev),
        "segment_description": about.get(change.segment),
        "model_version": change.model_version,
        "event_time": iso_ms(change.event_time_ms),
        "event_time_ms": change.event_time_ms,
        "cause": change.cause,
        "event_id": change.event_id,
        "features": change.features,
        "reason": change.reason,
        "tree_agrees": change.tree_agrees,
        "emitted_at": emitted_at,
    }


def dead_letter_payload(
    raw: bytes | None,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    *,
    reason_code: str = "invalid_event",
) -> bytes:
    """``dead-letters``: the raw message (UTF-8 text when it decodes, else base64), why, and where from.

    ``reason_code`` is the contract's stable code (:data:`segstream.models.contract.REASONS`) beside the
    text, for summaries and ``segstream dead-letters replay --reason``.
    """
    truncated = raw is not None and len(raw) > MAX_DEAD_LETTER_RAW
    if truncated:
        raw = raw[:MAX_DEAD_LETTER_RAW]  # type: ignore[index]
    if raw is None:
        body, encoding = None, "none"
    else:
        try:
            body, encoding = raw.decode("utf-8"), "text"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    key_text = None
    if key is not None:
        key_text = key.decode("utf-8", errors="backslashreplace")
    return dumps(
        {
            "raw": body,
            "raw_encoding": encoding,
            "raw_truncated": truncated,
            "error": error,
            "reason_code": reason_code,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key_text,
            "dead_lettered_at": now_iso(),
        }
    )
