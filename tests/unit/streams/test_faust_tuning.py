"""The consumer fetch wait faust does not expose: the patched factory sets it before the consumer starts."""

from __future__ import annotations

from types import SimpleNamespace

from faust.transport.drivers import aiokafka as driver

from segstream.streams.faust_tuning import set_consumer_fetch_max_wait


def test_patch_sets_the_fetch_wait_of_the_worker_consumer(monkeypatch):
    made = SimpleNamespace(_fetch_max_wait_ms=1500)
    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, transport: made)
    set_consumer_fetch_max_wait(25)
    consumer = driver.AIOKafkaConsumerThread._create_worker_consumer(object(), object())
    assert consumer is made and consumer._fetch_max_wait_ms == 25


def test_the_faust_factory_still_hard_codes_1500():
    # If faust makes the wait a setting, the worker should set it and this patch can go.
    import inspect

    assert "fetch_max_wait_ms=1500" in inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
