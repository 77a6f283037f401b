"""The Live page's dead-letter share, rate and top reasons from the monitoring records, and its alert."""

from __future__ import annotations

import pandas as pd
import pytest

from segstream.dashboard import monitoring, session
from tests.unit.dashboard.fixtures import dashboard_bundle, fresh_streamlit_caches, make_app, open_page, texts

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
__all__ = ["dashboard_bundle", "fresh_streamlit_caches"]


def _record(worker: str, seconds_ago: float, dead: int, events: int, alert: bool, **extra) -> dict:
    when = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=seconds_ago)
    return {
        "generated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "worker": worker, "events_per_s": 10.0,
        "processed": 1000, "dead_letters": dead, "consumer_lag": 0, "dead_letter_share": dead / events if events else 0,
        "dead_letters_window": dead, "events_window": events, "dead_letter_window_s": 60, "dead_letter_alert": alert,
        "dead_letter_alert_share": 0.5, **extra,
    }  # fmt: skip


def _serve_records(monkeypatch, records):
    monitoring_topic = session.settings().topics.monitoring

    def topic_records(topic, n=200):
        return (list(records), None) if topic == monitoring_topic else ([], "no changes in this test")

    monkeypatch.setattr(session, "topic_records", topic_records)


def test_live_page_shows_an_error_during_a_dead_letter_alert(dashboard_bundle, monkeypatch):
    records = [
        _record("w1", 40, 0, 100, False),
        _record("w1", 5, 80, 100, True, dead_letters_by_reason={"not_json": 70, "missing_amount": 10},
                dead_letters_by_reason_window={"not_json": 70, "missing_amount": 10}),
        _record("w2", 5, 10, 100, False, dead_letters_by_reason={"missing_amount": 10},
                dead_letters_by_reason_window={"missing_amount": 10}),
    ]  # fmt: skip
    app = make_app(monkeypatch, dashboard_bundle)
    _serve_records(monkeypatch, records)
    at = open_page(app, "live")
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e.value for e in at.error]
    assert "Dead-letter alert" in error and "45.0%" in error and "alert at 50%" in error  # 90 of 200, both workers
    assert "not valid JSON (`not_json`) ×70" in error and "missing amount (`missing_amount`) ×20" in error
    share = next(m for m in at.metric if m.label.startswith("Dead-letter share"))
    assert share.value == "45.0%" and share.label == "Dead-letter share (last 60 s)"
    rate = next(m for m in at.metric if m.label.startswith("Dead letters / s"))
    assert rate.value == "1.50"
    assert "`not_json` not valid JSON: 70 recently, 70 in all" in texts(at)


def test_live_page_shows_the_share_without_an_alert_below_the_threshold(dashboard_bundle, monkeypatch):
    records = [_record("w1", 5, 3, 100, False, dead_letters_by_reason={"not_json": 12},
                       dead_letters_by_reason_window={"not_json": 3})]  # fmt: skip
    app = make_app(monkeypatch, dashboard_bundle)
    _serve_records(monkeypatch, records)
    at = open_page(app, "live")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert next(m for m in at.metric if m.label.startswith("Dead-letter share")).value == "3.0%"
    assert "`not_json` not valid JSON: 3 recently, 12 in all" in texts(at)


def test_records_without_dead_letter_fields_show_no_dead_letter_section(dashboard_bundle, monkeypatch):
    record = {k: v for k, v in _record("w1", 5, 3, 100, False).items() if not k.startswith(("dead_letter", "events_"))}
    app = make_app(monkeypatch, dashboard_bundle)
    _serve_records(monkeypatch, [record])
    at = open_page(app, "live")
    assert not at.exception and not at.error
    assert not [m for m in at.metric if m.label.startswith("Dead-letter share")]


def test_latest_totals_add_up_the_window_and_any_worker_alert_counts():
    frame = monitoring.monitoring_frame([
        _record("a", 30, 90, 100, True), _record("a", 10, 0, 100, False), _record("b", 10, 60, 100, True),
    ])  # fmt: skip
    totals = monitoring.latest_totals(frame)
    assert totals["dead_letter_share"] == pytest.approx(60 / 200)
    assert totals["dead_letter_alert"] is True and totals["dead_letter_alert_share"] == 0.5
    # Without the window counts the worst worker's share stands for the deployment.
    older = [{"_timestamp_ms": 1, "worker": "a", "dead_letter_share": 0.2},
             {"_timestamp_ms": 2, "worker": "b", "dead_letter_share": 0.7}]  # fmt: skip
    assert monitoring.latest_totals(monitoring.monitoring_frame(older))["dead_letter_share"] == 0.7


def test_dead_letter_reasons_add_up_the_newest_record_of_each_worker():
    records = [
        {"_timestamp_ms": 3, "worker": "a", "dead_letters_by_reason": {"not_json": 5, "missing_amount": 1}},
        {"_timestamp_ms": 1, "worker": "a", "dead_letters_by_reason": {"not_json": 1}},
        {"_timestamp_ms": 2, "worker": "b", "dead_letters_by_reason": {"missing_amount": 7, "bad": "x"}},
        {"_timestamp_ms": 2, "worker": "c"},
    ]
    assert monitoring.dead_letter_reasons(records) == {"missing_amount": 8, "not_json": 5}
    assert list(monitoring.dead_letter_reasons(records)) == ["missing_amount", "not_json"]
    assert monitoring.dead_letter_reasons(records, "window") == {}
    assert monitoring.dead_letter_reasons([]) == {}
