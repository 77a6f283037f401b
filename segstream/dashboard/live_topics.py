"""Read the newest records of an output topic (``monitoring``, ``segment-changes``, ``sales-forecasts``).

A consumer without a group id: it joins nothing, commits nothing and never creates topics, so reading is
invisible to the worker and the broker's state. Each call seeks to ``end - n`` per partition and reads
up to the end, within a short deadline, so a missing broker costs a page at most a couple of seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

from segstream.dashboard.errors import LiveStateUnavailable
from segstream.settings import KafkaSettings


def tail_topic(settings: KafkaSettings, topic: str, n: int = 200, timeout_s: float = 3.0) -> list[dict[str, Any]]:
    """The last ``n`` JSON records of each partition of ``topic``, oldest first (by record timestamp).

    Each record is the decoded JSON object with ``_timestamp_ms`` (the Kafka record time) added; records
    that are not JSON objects are skipped. A topic that does not exist yet gives ``[]``.

    Raises:
        LiveStateUnavailable: The broker cannot be reached.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    kwargs = settings.kafka_python_kwargs() | {"request_timeout_ms": int(timeout_s * 1000) + 1000}
    try:
        consumer = KafkaConsumer(
            **kwargs, group_id=None, enable_auto_commit=False, allow_auto_create_topics=False,
            bootstrap_timeout_ms=int(timeout_s * 1000), consumer_timeout_ms=int(timeout_s * 1000),
        )  # fmt: skip
    except (KafkaError, OSError, ValueError) as exc:
        raise LiveStateUnavailable(f"Kafka at {settings.bootstrap_servers} is not reachable ({exc})") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        remaining = {}
        for tp in tps:
            start = max(begins[tp], ends[tp] - n)
            consumer.seek(tp, start)
            if ends[tp] > start:
                remaining[tp] = ends[tp]
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=200).items():
                for message in messages:
                    records += _decode(message.value, message.timestamp)
                if consumer.position(tp) >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
        records.sort(key=lambda r: r["_timestamp_ms"])
        return records
    except (KafkaError, OSError) as exc:
        raise LiveStateUnavailable(f"cannot read topic {topic!r} from {settings.bootstrap_servers} ({exc})") from exc
    finally:
        consumer.close()


def _decode(raw: bytes | None, timestamp_ms: int) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw or b"")
    except ValueError:
        return []
    if not isinstance(value, dict):
        return []
    value["_timestamp_ms"] = int(timestamp_ms)
    return [value]
