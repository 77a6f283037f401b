"""Run ``segstream ...`` (e.g. the worker) with faust's consumer fetch wait changed: a what-if knob.

faust-streaming 0.15.3 creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded (no
setting). Measured on the embedded Tansu 0.6.0: a fetch for several partitions is held for the whole
wait even when new records arrive (one partition answers at once), so each consuming hop adds up to
1.5 s of latency at low rates; with 100 ms the same hop took ~45 ms. Apache Kafka answers as soon as
``fetch_min_bytes`` is there, so this matters on the embedded broker only.

The worker applies ``SEGSTREAM_KAFKA_FETCH_MAX_WAIT_MS`` itself (default 10 ms, see
``segstream.streams.faust_tuning``). ``python -m segstream.bench.launch FETCH_MAX_WAIT_MS ARGS...`` overrides
it for one what-if run (``segstream bench --fetch-max-wait-ms``) and then runs ``segstream ARGS...``.
"""

from __future__ import annotations

import sys

from segstream.streams.faust_tuning import set_consumer_fetch_max_wait


def patch_fetch_max_wait(ms: int) -> None:
    """Make faust's worker consumer use ``fetch_max_wait_ms=ms`` (set before the consumer starts)."""
    set_consumer_fetch_max_wait(ms)


def main(argv: list[str] | None = None) -> None:
    """``FETCH_MAX_WAIT_MS ARGS...``: patch, then run the segstream CLI with ARGS."""
    args = list(sys.argv[1:] if argv is None else argv)
    patch_fetch_max_wait(int(args[0]))
    from segstream.cli.main import cli

    cli.main(args=args[1:], prog_name="segstream")


if __name__ == "__main__":
    main()
