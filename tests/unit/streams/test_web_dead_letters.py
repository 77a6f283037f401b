"""/health says "degraded" (200) during a dead-letter alert; /metrics has the share and the counts per reason."""

from __future__ import annotations

import asyncio

from segstream.streams.bundle_watch import ModelHolder
from segstream.streams.monitoring import DeadLetterWindow, WorkerStats
from segstream.streams.state import MemoryStateStore
from segstream.streams.web import WebContext
from tests.unit.streams.fakes import holder
from tests.unit.streams.test_web import _DownStore, _serve


def _stats(dead: dict[str, int], valid: int, share: float = 0.5) -> WorkerStats:
    stats = WorkerStats(dead_letter_window=DeadLetterWindow(60), dead_letter_alert_share=share,
                        dead_letter_alert_min_events=10)  # fmt: skip
    stats.note_valid(valid)
    for reason, n in dead.items():
        for _ in range(n):
            stats.note_dead_letter(reason)
    stats.dead_letters = sum(dead.values())
    stats.processed = valid
    return stats


def test_health_is_degraded_with_the_share_threshold_and_top_reasons_during_an_alert():
    stats = _stats({"not_json": 30, "missing_amount": 10, "invalid_quantity": 1}, valid=9)
    [(status, body)] = asyncio.run(_serve(WebContext(MemoryStateStore(), holder(), stats), ["/health"]))
    assert status == 200 and body["status"] == "degraded" and body["problems"] == []
    assert body["model_version"] == "v-test"
    dl = body["dead_letters"]
    assert dl["alert"] is True and dl["share"] == 0.82 and dl["threshold"] == 0.5 and dl["window_s"] == 60
    assert dl["events"] == 50 and dl["dead_letters"] == 41
    assert dl["top_reasons"][:2] == [{"reason": "not_json", "count": 30}, {"reason": "missing_amount", "count": 10}]
    assert len(body["warnings"]) == 1 and "82.0%" in body["warnings"][0] and "not_json=30" in body["warnings"][0]


def test_health_is_ok_below_the_threshold_and_reports_the_share():
    stats = _stats({"not_json": 4}, valid=96)
    [(status, body)] = asyncio.run(_serve(WebContext(MemoryStateStore(), holder(), stats), ["/health"]))
    assert status == 200 and body["status"] == "ok" and body["warnings"] == []
    assert body["dead_letters"]["alert"] is False and body["dead_letters"]["share"] == 0.04


def test_unhealthy_wins_over_degraded():
    stats = _stats({"not_json": 50}, valid=0)
    ctx = WebContext(_DownStore(), ModelHolder("/nonexistent"), stats)
    [(status, body)] = asyncio.run(_serve(ctx, ["/health"]))
    assert status == 503 and body["status"] == "unhealthy" and body["dead_letters"]["alert"] is True


def test_metrics_have_dead_letters_by_reason_and_the_share():
    stats = _stats({"not_json": 3, 'we"ird\\': 1}, valid=4)
    [(status, text)] = asyncio.run(_serve(WebContext(MemoryStateStore(), holder(), stats), ["/metrics"]))
    assert status == 200
    lines = text.splitlines()
    assert "# TYPE segstream_dead_letters_by_reason_total counter" in lines
    assert 'segstream_dead_letters_by_reason_total{reason="not_json"} 3' in lines
    assert 'segstream_dead_letters_by_reason_total{reason="we\\"ird\\\\"} 1' in lines
    assert "# TYPE segstream_dead_letter_share gauge" in lines
    assert "segstream_dead_letter_share 0.5" in lines
    assert "segstream_dead_letter_alert 0" in lines  # 8 events: below the minimum of 10
    assert "segstream_dead_letters_total 4" in lines


def test_metrics_of_a_fresh_worker():
    [(_, text)] = asyncio.run(_serve(WebContext(MemoryStateStore(), holder(), WorkerStats()), ["/metrics"]))
    assert "segstream_dead_letter_share 0" in text.splitlines()
    assert "segstream_dead_letters_by_reason_total{" not in text
