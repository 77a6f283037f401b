"""How noisy a run's segment changes are: changes per 1,000 events and the flap rate, from the topic."""

from __future__ import annotations

import json
from typing import Any

from segstream.settings import KafkaSettings
from segstream.streams.monitoring import DEFAULT_FLAP_WINDOW_DAYS, flap_rate


def read_changes(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every record of a ``segment-changes`` topic, from the beginning to its current end."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.kafka_python_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500, max_records=50_000).values():
                out += [json.loads(m.value) for m in messages]
        return out
    finally:
        consumer.close()


def noise(changes: list[dict[str, Any]], events: int, window_days: float = DEFAULT_FLAP_WINDOW_DAYS) -> dict[str, Any]:
    """Changes per 1,000 events, the flap rate and the share of changes the decision tree disagrees with."""
    count, rate = flap_rate(changes, window_days)
    judged = [c for c in changes if c.get("tree_agrees") is not None]
    return {
        "changes": count,
        "events": events,
        "changes_per_1000_events": 1000.0 * count / events if events else None,
        "moves_per_1000_events": (1000.0 * sum(1 for c in changes if c.get("previous_segment") is not None) / events
                                  if events else None),
        "flap_rate": rate,
        "flap_window_days": window_days,
        "tree_disagreement_share": (sum(1 for c in judged if not c["tree_agrees"]) / len(judged)) if judged else None,
        "by_cause": {cause: sum(1 for c in changes if c.get("cause") == cause) for cause in ("purchase", "inactivity")},
    }
