"""Consumer knobs faust-streaming does not expose.

faust 0.15.3 builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting for it. Measured on
the embedded Tansu broker, a fetch over several partitions is held for that whole wait even when records
arrive, so every event waited ~0.5-1.5 s (bench: p99 1.8 s at 1,000 ev/s with 1500 ms; 147 ms with 10 ms;
throughput unchanged). The worker, the bench's ceiling and its baseline all apply the same setting.
"""

from __future__ import annotations

from typing import Any


def set_consumer_fetch_max_wait(ms: int) -> None:
    """Make every faust worker consumer created from now on use ``fetch_max_wait_ms=ms``."""
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread, "_segstream_original_create", None)
    if original is None:
        original = driver.AIOKafkaConsumerThread._create_worker_consumer
        driver.AIOKafkaConsumerThread._segstream_original_create = original  # type: ignore[attr-defined]

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() when it builds the Fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]
