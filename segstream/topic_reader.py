"""Read a stretch of a topic without joining a consumer group: the one reader the CLI, dashboard, bench and
tests share.

A consumer with no group id joins nothing, commits nothing and never creates topics, so reading is invisible
to the workers and the broker's state. It assigns every partition, seeks to where the read starts (the
beginning, a record time, or the last ``n`` records per partition) and reads until every partition's position
has passed the end offset it saw when it started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from segstream.models.errors import SegstreamError
from segstream.settings import KafkaSettings


class TopicReadError(SegstreamError):
    """The broker cannot be reached, or the topic was not read to its end in time."""


@dataclass(frozen=True)
class TopicRecord:
    """One record as read."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def read_records(
    kafka: KafkaSettings,
    topic: str,
    *,
    since_ms: int | None = None,
    last: int | None = None,
    timeout_s: float = 10.0,
    require_end: bool = False,
    max_records: int = 20_000,
) -> list[TopicRecord]:
    """The records of ``topic`` from the beginning (or from ``since_ms``, or the ``last`` per partition) to
    the end it had when the read started, in partition then offset order. A topic that does not exist is
    empty.

    Args:
        require_end: Raise when the end is not reached within ``timeout_s`` (otherwise return what was read:
            a page that must not hang takes what it has).

    Raises:
        TopicReadError: the broker cannot be reached or fails, or ``require_end`` and the deadline passed.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    try:
        consumer = KafkaConsumer(
            **kafka.kafka_python_kwargs() | {"request_timeout_ms": timeout_ms + 1000},
            group_id=None, enable_auto_commit=False, allow_auto_create_topics=False,
            bootstrap_timeout_ms=timeout_ms,
        )  # fmt: skip
    except (KafkaError, OSError, ValueError) as exc:
        raise TopicReadError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        if since_ms is not None:
            found = consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
        if last is not None:
            starts = {tp: max(starts[tp], ends[tp] - last) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        out: list[TopicRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                if require_end:
                    raise TopicReadError(
                        f"reading {topic!r} at {kafka.bootstrap_servers} did not reach its end within {timeout_s:g}s"
                    )
                break
            # Every polled record is kept, past the end offset too: the embedded broker (Tansu 0.6) reports
            # the end of a partition as the last record batch's base offset + 1, inside that batch.
            for messages in consumer.poll(timeout_ms=200, max_records=max_records).values():
                out += [TopicRecord(m.partition, m.offset, m.key, m.value, int(m.timestamp)) for m in messages]
    except KafkaError as exc:
        raise TopicReadError(f"reading {topic!r} at {kafka.bootstrap_servers} failed: {exc}") from exc
    finally:
        consumer.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out
