"""The bare-faust ceiling: an agent that only counts raw events, with the worker's settings.

Run as ``python -m segstream.bench.ceiling --group G --expect N --result FILE [--mode worker|take|each]`` with
the worker's ``SEGSTREAM_*`` environment. ``worker`` (the default) consumes exactly like the worker: a
manual-ack stream feeding :class:`~segstream.streams.batching.EventBatcher`, batches acknowledged by
:func:`~segstream.streams.batching.process_batches`, with a handler that only counts. ``take`` is faust's
``stream.take_events(batch_size, within=50 ms)`` and ``each`` the plain ``async for event`` loop, for
comparison. Whatever faust costs per event here is the most one worker process can do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segstream.bench.faustapp import Counter, app_kwargs, finish, prepare_process, process_arguments, run_app
from segstream.settings import Settings
from segstream.streams.batching import consume_in_batches

MODES = ("worker", "take", "each")
TAKE_WITHIN_S = 0.05


def build_app(settings: Settings, group: str, expect: int, result: Path, mode: str, loop_kind: str) -> Any:
    """The counting app (consumes ``settings.topics.transactions`` as raw bytes)."""
    import faust

    app = faust.App(group, datadir=str(result.parent / f"faust-{group}"), **app_kwargs(settings))
    source = app.topic(settings.topics.transactions, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")  # fmt: skip
    counter = Counter(expect)
    extra = {"mode": mode, "loop": loop_kind}
    w = settings.worker

    @app.agent(source, name="bench-ceiling")
    async def count(stream: Any) -> None:
        if mode == "worker":

            async def handle(events: Sequence[Any]) -> None:
                if counter.add(len(events)):
                    finish(counter, result, extra)

            await consume_in_batches(stream, w.batch_size, handle)
        elif mode == "take":
            async for events in stream.take_events(w.batch_size, within=TAKE_WITHIN_S):
                if counter.add(len(events)):
                    finish(counter, result, extra)
        else:
            async for _event in stream.events():
                if counter.add(1):
                    finish(counter, result, extra)

    return app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the app and run it until ``--expect`` events were counted."""
    parser = process_arguments(__doc__)
    parser.add_argument("--mode", choices=MODES, default="worker")
    args = parser.parse_args(argv)
    settings, loop_kind = prepare_process(args)
    app = build_app(settings, args.group, args.expect, args.result, args.mode, loop_kind)
    run_app(app)


if __name__ == "__main__":
    main()
