"""The ceiling and baseline run with the worker's faust settings; their counter times the right span."""

from __future__ import annotations

import pytest

from segstream.bench.faustapp import Counter, app_kwargs, described_kwargs
from segstream.settings import KafkaSettings, Settings, WorkerSettings


def test_app_kwargs_follow_the_worker_settings():
    settings = Settings.load(kafka=KafkaSettings(bootstrap_servers="h1:9092,h2:9092"),
                             worker=WorkerSettings(batch_size=2000))  # fmt: skip
    kwargs = app_kwargs(settings)
    assert kwargs["broker"] == "kafka://h1:9092;h2:9092"
    assert kwargs["broker_max_poll_records"] == 5000
    assert kwargs["stream_buffer_maxsize"] == 8000
    assert kwargs["broker_session_timeout"] == settings.kafka.session_timeout_ms / 1000
    assert kwargs["consumer_auto_offset_reset"] == "earliest"
    assert "broker_credentials" not in described_kwargs(settings)


def test_counter_rate_starts_after_the_first_batch(monkeypatch):
    clock = iter([100.0, 101.0, 102.0])
    monkeypatch.setattr("segstream.bench.faustapp.time.perf_counter", lambda: next(clock))
    counter = Counter(expect=2500)
    assert counter.add(500) is False
    assert counter.add(1000) is False
    assert counter.add(1000) is True
    assert counter.eps == pytest.approx(2000 / 2.0)


def test_a_single_batch_has_no_rate():
    counter = Counter(expect=10)
    assert counter.add(10) is True
    assert counter.eps == 0.0


def test_counter_budget_ends_the_count_early(monkeypatch):
    clock = iter([10.0, 11.0, 16.0])
    monkeypatch.setattr("segstream.bench.faustapp.time.perf_counter", lambda: next(clock))
    counter = Counter(expect=1_000_000, budget_s=5.0)
    assert counter.add(1) is False
    assert counter.add(1) is False
    assert counter.add(1) is True
    assert counter.eps == pytest.approx(2 / 6.0)
