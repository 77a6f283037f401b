"""Run ``segstream ...`` (e.g. the worker) with faust's consumer fetch wait changed: a what-if knob.

faust-streaming 0.15.3 creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded (no
setting). Measured on the embedded Tansu 0.6.0: a fetch for several partitions is held for the whole
wait even when new records arrive (one partition answers at once), so each consuming hop adds up to
1.5 s of latency at low rates; with 100 ms the same hop took ~45 ms. Apache Kafka answers as soon as
``fetch_min_bytes`` is there, so this matters on the embedded broker only.

``python -m segstream.bench.launch FETCH_MAX_WAIT_MS ARGS...`` patches the consumer the faust worker
creates and then runs ``segstream ARGS...``. The bench uses it only when asked
(``--fetch-max-wait-ms``), to measure what the worker would gain from the setting; the worker itself is
unchanged.
"""

from __future__ import annotations

import sys
from typing import Any


def patch_fetch_max_wait(ms: int) -> None:
    """Make faust's worker consumer use ``fetch_max_wait_ms=ms`` (set before the consumer starts)."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() when it builds the Fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """``FETCH_MAX_WAIT_MS ARGS...``: patch, then run the segstream CLI with ARGS."""
    args = list(sys.argv[1:] if argv is None else argv)
    patch_fetch_max_wait(int(args[0]))
    from segstream.cli.main import cli

    cli.main(args=args[1:], prog_name="segstream")


if __name__ == "__main__":
    main()
