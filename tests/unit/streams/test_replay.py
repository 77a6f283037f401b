"""Turning a clean events frame into event-contract records for replay."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from segstream.models.events import parse_event
from segstream.streams.replay import records_from_frame


def test_records_are_in_timestamp_order_with_epoch_ms_and_pass_through_columns():
    frame = pd.DataFrame({
        "event_id": ["e2", "e1", "e3"],
        "customer_id": ["b", "a", "a"],
        "timestamp": pd.to_datetime(["2025-01-02T00:00:00.123456Z", "2025-01-01T00:00:00Z", "2025-01-03T10:00:00Z"],
                                    format="ISO8601"),
        "amount": [1.5, -2.25, 3.0],
        "channel": ["web", None, "store"],
        "quantity": [1, 2, np.nan],
    })  # fmt: skip
    records = records_from_frame(frame)
    assert [r["event_id"] for r in records] == ["e1", "e2", "e3"]
    assert records[1]["timestamp"] == 1_735_776_000_123  # sub-millisecond digits truncated, as in batch
    assert records[0] == {"event_id": "e1", "customer_id": "a", "timestamp": 1_735_689_600_000, "amount": -2.25,
                          "quantity": 2.0}  # fmt: skip
    assert records[2]["channel"] == "store" and "quantity" not in records[2]
    for rec in records:
        event = parse_event(json.dumps(rec).encode())
        assert event.ts_ms == rec["timestamp"] and event.amount == rec["amount"]


def test_unsorted_keeps_the_given_order():
    stamps = pd.to_datetime(["2025-02-01", "2025-01-01"], utc=True)
    frame = pd.DataFrame({"event_id": ["x", "y"], "customer_id": ["a", "a"], "timestamp": stamps, "amount": [1.0, 2.0]})
    assert [r["event_id"] for r in records_from_frame(frame, sort=False)] == ["x", "y"]
