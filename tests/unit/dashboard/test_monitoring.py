"""Monitoring records -> frames, tolerant of field names and missing fields."""

from __future__ import annotations

import pandas as pd
import pytest

from segstream.dashboard.monitoring import latest_totals, mix_frame, monitoring_frame, record_time


def test_fields_are_read_under_their_accepted_names_oldest_first():
    records = [
        {"_timestamp_ms": 2000, "events_per_second": 10.0, "lag": {"0": 3, "1": 4}, "drift": {"psi": 0.2}},
        {"_timestamp_ms": 1000, "events_per_s": 5.0, "consumer_lag": 1, "dead_letters": 2, "drift_psi": 0.1},
    ]
    frame = monitoring_frame(records)
    assert list(frame["events_per_s"]) == [5.0, 10.0]
    assert list(frame["lag"]) == [1, 7.0]
    assert list(frame["drift_psi"]) == [0.1, 0.2]
    assert frame["dead_letters"].iloc[0] == 2


def test_no_records_gives_an_empty_frame_with_time():
    assert list(monitoring_frame([]).columns) == ["time"]
    assert mix_frame([]).empty


def test_mix_shares_sum_to_one_per_record_and_accept_prefixed_ids():
    records = [
        {"generated_at": "2026-01-01T00:00:00Z", "segment_mix": {"segment:0": 3, "segment:1": 1}},
        {"generated_at": "2026-01-01T00:01:00Z", "segment_distribution": {"live": {"0": 0.5, "1": 0.5}}},
        {"generated_at": "2026-01-01T00:02:00Z", "segment_mix": {}},
    ]
    mix = mix_frame(records)
    assert mix.groupby("time")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    assert set(mix["segment"]) == {0, 1}
    assert mix.loc[mix["segment"] == 0, "share"].iloc[0] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"generated_at": "2026-01-01T10:00:00+02:00"}, "2026-01-01T08:00:00Z"),
        ({"time": 1767225600000}, "2026-01-01T00:00:00Z"),
        ({"time": 1767225600}, "2026-01-01T00:00:00Z"),
        ({"_timestamp_ms": 1767225600000}, "2026-01-01T00:00:00Z"),
        ({"time": "garbage", "_timestamp_ms": 1767225600000}, "2026-01-01T00:00:00Z"),
    ],
)
def test_record_time_prefers_the_records_own_time(record, expected):
    assert record_time(record) == pd.Timestamp(expected)


def test_latest_totals_add_up_the_newest_record_of_each_worker():
    records = [
        {"_timestamp_ms": 1000, "worker": "a", "events_per_s": 100.0, "consumer_lag": 5, "drift_psi": 0.01},
        {"_timestamp_ms": 2000, "worker": "b", "events_per_s": 50.0, "consumer_lag": 1, "drift_psi": 0.3},
        {"_timestamp_ms": 3000, "worker": "a", "events_per_s": 200.0, "consumer_lag": 2, "drift_psi": 0.02},
    ]
    totals = latest_totals(monitoring_frame(records))
    assert totals["workers"] == 2
    assert totals["events_per_s"] == 250.0 and totals["lag"] == 3.0 and totals["drift_psi"] == 0.3
    assert latest_totals(monitoring_frame([])) == {}
