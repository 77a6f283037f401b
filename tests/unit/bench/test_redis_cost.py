"""Redis cost per event from two INFO snapshots: CPU, and calls and time per command that ran in between."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segstream.bench.redis_cost import RedisSnapshot, cost_per_event, scripts_us_per_event, snapshot_of


def test_a_snapshot_reads_the_cpu_and_the_commands_of_info():
    snap = snapshot_of(
        {"used_cpu_user": 1.5, "used_cpu_sys": 0.25, "used_cpu_user_children": 9.0},
        {"cmdstat_evalsha": {"calls": 10, "usec": 400, "usec_per_call": 40.0}, "errorstat_ERR": "count=1"},
        {"total_forks": 3, "latest_fork_usec": 671},
    )
    assert snap.cpu_seconds == pytest.approx(1.75)  # children (AOF rewrites) are not the server's own work
    assert snap.commands == {"evalsha": (10, 400)}
    assert snap.forks == 3
    assert snapshot_of({}, {}).forks == 0  # a server that does not say: no forks counted


def test_the_cost_is_what_ran_between_the_snapshots_per_event_most_expensive_first():
    before = RedisSnapshot(10.0, {"evalsha": (5, 1_000), "get": (100, 50), "hgetall": (7, 70)}, forks=2)
    after = RedisSnapshot(10.5, {"evalsha": (15, 41_000), "get": (100, 50), "hgetall": (2_007, 10_070),
                                 "zadd": (1_000, 1_000)}, forks=3)  # fmt: skip
    cost = cost_per_event(before, after, 1_000)
    assert cost["events"] == 1_000 and cost["forks"] == 1
    assert cost["cpu_us_per_event"] == pytest.approx(500.0)
    assert list(cost["commands"]) == ["evalsha", "hgetall", "zadd"]  # GET did not run in between
    assert cost["commands"]["evalsha"] == {"calls_per_event": 0.01, "us_per_event": 40.0, "us_per_call": 4_000.0}
    assert cost["commands"]["hgetall"]["us_per_call"] == pytest.approx(5.0)
    assert scripts_us_per_event(cost) == pytest.approx(40.0)


def test_no_events_or_no_scripts_give_no_figures():
    snap = RedisSnapshot(1.0, {"get": (1, 1)})
    assert cost_per_event(snap, snap, 0) == {}
    assert scripts_us_per_event(cost_per_event(snap, RedisSnapshot(1.0, {"get": (2, 3)}), 1)) is None
    assert scripts_us_per_event({}) is None


@given(
    calls=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**9)), min_size=1, max_size=5),
    events=st.integers(1, 10**6),
)
def test_per_event_and_per_call_figures_agree(calls, events):
    before = RedisSnapshot(0.0, {})
    after = RedisSnapshot(1.0, {f"c{i}": pair for i, pair in enumerate(calls)})
    cost = cost_per_event(before, after, events)
    for name, figures in cost["commands"].items():
        n, usec = after.commands[name]
        assert figures["us_per_event"] * events == pytest.approx(usec)
        assert figures["us_per_call"] * n == pytest.approx(usec)
    assert len(cost["commands"]) == sum(1 for n, _ in calls if n > 0)
