"""Bench events: sized from the generator's density, time-ordered, run-unique ids, latency follow-ups."""

from __future__ import annotations

import json

from segstream.bench.latency import percentiles
from segstream.bench.workload import follow_up_record, history_days, make_workload
from segstream.models.events import parse_event


def test_history_days_scales_with_events_per_customer():
    assert history_days(100_000, 10_000) > history_days(50_000, 10_000) > 0
    assert history_days(10, 1_000_000) == 1
    assert history_days(10**9, 1) == 3650


def test_workload_is_valid_time_ordered_and_unique():
    w = make_workload(2000, 300, seed=1, run_id="r7")
    assert 0 < len(w) <= 2000
    events = [parse_event(v) for v in w.values]
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    assert all(e.event_id.startswith("r7-") for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert w.keys == [e.customer_id.encode() for e in events]
    assert w.customers == len({e.customer_id for e in events})
    assert len(list(w.pairs(limit=5))) == 5


def test_follow_up_events_are_later_new_and_carry_the_send_time():
    w = make_workload(500, 50, seed=2, run_id="r8")
    a, b = (follow_up_record(w, i, "r8", 123 + i) for i in (0, 1))
    assert a["timestamp"] > w.records[-1]["timestamp"] and b["timestamp"] > a["timestamp"]
    assert a["event_id"] == "r8-lat-0" and b["bench_sent_ns"] == 124
    event = parse_event(json.dumps(a))
    assert event.payload["bench_sent_ns"] == 123


def test_percentiles():
    out = percentiles([float(i) for i in range(1, 101)])
    assert out["p50"] == 50.5 and out["max"] == 100.0 and 99 <= out["p99"] <= 100
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}
