"""How noisy a run's segment changes are: changes per 1,000 events and the flap rate, from the topic."""

from __future__ import annotations

import json
from typing import Any

from segstream.settings import KafkaSettings
from segstream.streams.monitoring import DEFAULT_FLAP_WINDOW_DAYS, flap_rate


def read_changes(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every record of a ``segment-changes`` topic, from the beginning to its current end."""
    from segstream.topic_reader import read_records

    return [json.loads(r.value) for r in read_records(kafka, topic, timeout_s=timeout_s, max_records=50_000) if r.value]


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
