"""Read the newest records of an output topic (``monitoring``, ``segment-changes``, ``sales-forecasts``).

Through :func:`segstream.topic_reader.read_records` (no consumer group: invisible to the worker). Each call
reads the last ``n`` records per partition within a short deadline, so a missing broker costs a page at
most a couple of seconds.
"""

from __future__ import annotations

import json
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
    from segstream.topic_reader import TopicReadError, read_records

    try:
        found = read_records(settings, topic, last=n, timeout_s=timeout_s)
    except TopicReadError as exc:
        raise LiveStateUnavailable(str(exc)) from exc
    records = [r for record in found for r in _decode(record.value, record.timestamp_ms)]
    records.sort(key=lambda r: r["_timestamp_ms"])
    return records


def _decode(raw: bytes | None, timestamp_ms: int) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw or b"")
    except ValueError:
        return []
    if not isinstance(value, dict):
        return []
    value["_timestamp_ms"] = int(timestamp_ms)
    return [value]
