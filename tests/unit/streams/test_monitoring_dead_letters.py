"""The dead-letter window, its share and alert, by-reason counts, and their fields in the monitoring record."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segstream.settings import WorkerSettings
from segstream.streams.app import worker_stats
from segstream.streams.monitoring import DeadLetterWindow, WorkerStats, monitoring_record

REASONS = ["not_json", "missing_amount", "invalid_customer_id", "timestamp_in_future"]


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def stats_with_clock(window_s: int = 60, share: float = 0.5, min_events: int = 1) -> tuple[WorkerStats, FakeClock]:
    clock = FakeClock()
    stats = WorkerStats(dead_letter_window=DeadLetterWindow(window_s, clock=clock), dead_letter_alert_share=share,
                        dead_letter_alert_min_events=min_events)  # fmt: skip
    return stats, clock


_op = st.tuples(
    st.one_of(st.floats(0, 3), st.floats(0, 200)),  # time step before the op: mostly small, sometimes laps the ring
    st.sampled_from(["valid", "dead"]),
    st.integers(0, 7),
    st.sampled_from(REASONS),
)


@given(window_s=st.integers(1, 90), ops=st.lists(_op, max_size=120), last_step=st.floats(0, 150))
def test_window_share_equals_a_naive_recount_of_the_events_in_the_window(window_s, ops, last_step):
    stats, clock = stats_with_clock(window_s)
    seen: list[tuple[float, str, int, str]] = []

    def naive() -> tuple[int, int, dict[str, int]]:
        now = math.floor(clock.t)
        inside = [e for e in seen if math.floor(e[0]) > now - window_s]
        valid = sum(n for _, kind, n, _ in inside if kind == "valid")
        reasons: dict[str, int] = {}
        for _, kind, _, reason in inside:
            if kind == "dead":
                reasons[reason] = reasons.get(reason, 0) + 1
        return valid, sum(reasons.values()), reasons

    def check() -> None:
        valid, dead, reasons = naive()
        status = stats.dead_letter_status()
        assert (status.valid, status.dead_letters, status.reasons) == (valid, dead, reasons)
        assert status.share == (dead / (valid + dead) if valid + dead else 0.0)

    for step, kind, n, reason in ops:
        clock.t += step
        if kind == "valid":
            stats.note_valid(n)
        else:
            stats.note_dead_letter(reason)
        seen.append((clock.t, kind, n, reason))
        check()
    clock.t += last_step
    check()
    # Totals by reason never expire.
    assert dict(stats.dead_letters_by_reason) == {
        r: sum(1 for _, kind, _, reason in seen if kind == "dead" and reason == r)
        for r in REASONS
        if any(kind == "dead" and reason == r for _, kind, _, reason in seen)
    }


def test_the_window_is_the_current_second_and_the_ones_before_it():
    clock = FakeClock(100.9)
    window = DeadLetterWindow(3, clock=clock)
    window.add_dead_letter("not_json")  # second 100
    clock.t = 102.99  # seconds 100..102 are in
    assert window.totals()[1] == 1
    clock.t = 103.0  # second 100 has left
    assert window.totals()[1] == 0
    window.add_valid(4)  # reuses second 100's bucket: nothing of it may survive
    assert window.totals() == (4, 0, {})
    with pytest.raises(ValueError):
        DeadLetterWindow(0)


def test_memory_is_one_bucket_per_second_of_the_window():
    stats, clock = stats_with_clock(window_s=5)
    for i in range(10_000):
        clock.t += 0.37
        stats.note_dead_letter(REASONS[i % 2])
        stats.note_valid(1)
    window = stats.dead_letter_window
    assert len(window._second) == len(window._valid) == len(window._dead) == len(window._reasons) == 5
    assert all(len(c) <= 2 for c in window._reasons)


def _warnings_and_infos(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if "dead-letter alert" in r.getMessage()]


def test_alert_is_logged_once_when_it_starts_and_once_when_it_clears(caplog):
    stats, clock = stats_with_clock(window_s=60, share=0.5, min_events=10)
    caplog.set_level(logging.INFO, logger="segstream.worker")
    stats.note_valid(4)
    for _ in range(6):
        stats.note_dead_letter("not_json")
    stats.note_dead_letter("missing_amount")
    for _ in range(5):  # several monitoring ticks / health checks while in alert
        clock.t += 1
        assert stats.dead_letter_status().alert
    logged = _warnings_and_infos(caplog)
    assert len(logged) == 1 and logged[0][0] == "WARNING"
    assert "63.6%" in logged[0][1] and "7 of 11" in logged[0][1] and "not_json=6, missing_amount=1" in logged[0][1]

    stats.note_valid(100)  # good traffic again: the share falls under the threshold
    for _ in range(3):
        clock.t += 1
        assert not stats.dead_letter_status().alert
    logged = _warnings_and_infos(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO"] and "cleared" in logged[1][1]

    # It can start again, and an emptied window clears it too.
    for _ in range(200):
        stats.note_dead_letter("not_json")
    assert stats.dead_letter_status().alert
    clock.t += 61
    assert not stats.dead_letter_status().alert
    assert [level for level, _ in _warnings_and_infos(caplog)] == ["WARNING", "INFO", "WARNING", "INFO"]


def test_no_alert_below_the_minimum_of_events_or_the_threshold():
    stats, _ = stats_with_clock(share=0.5, min_events=10)
    for _ in range(9):
        stats.note_dead_letter("not_json")  # 100% dead letters, but only 9 events
    assert not stats.dead_letter_status().alert
    stats.note_valid(10)  # 9 of 19: 47%
    status = stats.dead_letter_status()
    assert not status.alert and status.events == 19
    stats.note_dead_letter("not_json")  # 10 of 20: the threshold itself alerts (a threshold of 1.0 must be reachable)
    assert stats.dead_letter_status().alert


def test_monitoring_record_has_the_share_the_reasons_and_the_alert():
    stats, _ = stats_with_clock(share=0.25, min_events=1)
    stats.note_valid(6)
    for reason in ["missing_amount", "not_json", "not_json"]:
        stats.note_dead_letter(reason)
    stats.dead_letters = 3  # the pipeline adds the batch total when it finishes
    record = monitoring_record(stats, model_version="v1", training_mix=None, lag=None, watermark_ms=0,
                               events_per_s=1.0, worker_id="w")  # fmt: skip
    assert record["dead_letter_share"] == pytest.approx(3 / 9, abs=1e-6)
    assert record["dead_letters_by_reason"] == {"not_json": 2, "missing_amount": 1}
    assert list(record["dead_letters_by_reason"]) == ["not_json", "missing_amount"]  # most frequent first
    assert record["dead_letter_alert"] is True and record["dead_letter_alert_share"] == 0.25
    assert record["dead_letters_window"] == 3 and record["events_window"] == 9 and record["dead_letter_window_s"] == 60
    assert record["dead_letters"] == 3


def test_a_fresh_worker_reports_a_zero_share_and_no_alert():
    record = monitoring_record(WorkerStats(), model_version=None, training_mix=None, lag=None, watermark_ms=0,
                               events_per_s=0.0, worker_id="w")  # fmt: skip
    assert record["dead_letter_share"] == 0.0 and record["dead_letter_alert"] is False
    assert record["dead_letters_by_reason"] == {}


def test_settings_configure_the_alert(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_WORKER_DEAD_LETTER_ALERT_SHARE", "0.2")
    monkeypatch.setenv("SEGSTREAM_WORKER_DEAD_LETTER_ALERT_WINDOW_S", "30")
    w = WorkerSettings()
    assert w.dead_letter_alert_share == 0.2 and w.dead_letter_alert_window_s == 30
    stats = worker_stats(w)
    assert stats.dead_letter_alert_share == 0.2 and stats.dead_letter_window.window_s == 30
    for bad in ("0", "1.5", "-0.1"):
        monkeypatch.setenv("SEGSTREAM_WORKER_DEAD_LETTER_ALERT_SHARE", bad)
        with pytest.raises(ValueError):
            WorkerSettings()
    monkeypatch.setenv("SEGSTREAM_WORKER_DEAD_LETTER_ALERT_SHARE", "1")
    assert WorkerSettings().dead_letter_alert_share == 1.0


def test_default_settings():
    w = WorkerSettings()
    assert (w.dead_letter_alert_share, w.dead_letter_alert_window_s, w.dead_letter_alert_min_events) == (0.5, 60, 10)
