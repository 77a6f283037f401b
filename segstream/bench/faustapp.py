"""What the bench's own faust processes (the ceiling and the naive baseline) share with the worker.

They must run with the worker's settings or the ratios mean nothing: :func:`app_kwargs` is the worker's
own :func:`segstream.streams.app.faust_app_kwargs` (``settings_used`` in the bench JSON shows them).

Each process reads its settings from the same ``SEGSTREAM_*`` environment the harness gives the worker,
counts what it consumed, writes a small JSON result file and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segstream.bench.procs import main_thread_sched, sched_percent
from segstream.settings import Settings


def app_kwargs(settings: Settings) -> dict[str, Any]:
    """The ``faust.App`` keyword arguments the worker uses (broker, group tuning, buffers, producer)."""
    from segstream.streams.app import faust_app_kwargs

    return faust_app_kwargs(settings)


def described_kwargs(settings: Settings) -> dict[str, Any]:
    """:func:`app_kwargs` as JSON-friendly values (credentials left out)."""
    return {k: v for k, v in app_kwargs(settings).items() if k != "broker_credentials"}


def process_arguments(description: str | None) -> argparse.ArgumentParser:
    """The command-line arguments every bench faust process takes (callers add their own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=None)
    return parser


def prepare_process(args: argparse.Namespace) -> tuple[Settings, str]:
    """Settings, consumer fetch wait and event loop as the worker has them; returns (settings, loop kind).

    The fetch wait is the worker's setting unless the run overrides it (``--fetch-max-wait-ms``).
    """
    from segstream.streams.faust_tuning import set_consumer_fetch_max_wait

    settings = Settings.load()
    wait = args.fetch_max_wait_ms
    set_consumer_fetch_max_wait(settings.kafka.fetch_max_wait_ms if wait is None else wait)
    return settings, install_loop(not args.no_uvloop)


def install_loop(prefer_uvloop: bool = True) -> str:
    """Set a fresh event loop (uvloop when installed and preferred); returns ``"uvloop"`` or ``"asyncio"``."""
    from segstream.streams.app import use_uvloop

    if prefer_uvloop and use_uvloop() == "uvloop":
        return "uvloop"
    asyncio.set_event_loop(asyncio.new_event_loop())
    return "asyncio"


@dataclass
class Counter:
    """Counts consumed events and times them from the first consumed to the last one expected.

    The rate leaves out the first batch (its events were consumed before the clock started):
    ``(events - first_batch) / (t_last - t_first)``. With ``budget_s`` the count also ends once that many
    seconds have passed since the first event (the naive baseline is slow; its rate is what counts).
    """

    expect: int
    budget_s: float | None = None
    events: int = 0
    first_batch: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    sched_first: tuple[float, float] = (0.0, 0.0)  # this process's main thread at the first event

    def add(self, n: int) -> bool:
        """Record ``n`` more consumed events; True once ``expect`` is reached."""
        now = time.perf_counter()
        if self.events == 0:
            self.t_first, self.first_batch = now, n
            self.sched_first = main_thread_sched(os.getpid())
        self.events += n
        self.t_last = now
        over_budget = self.budget_s is not None and now - self.t_first >= self.budget_s
        return self.events >= self.expect or over_budget

    @property
    def eps(self) -> float:
        """Sustained events per second (0 when too few events were timed)."""
        span = self.t_last - self.t_first
        return (self.events - self.first_batch) / span if span > 0 else 0.0


def finish(counter: Counter, result_file: Path, extra: dict[str, Any] | None = None) -> None:
    """Write the result and leave at once (the group is per run, so a clean leave is not needed)."""
    seconds = time.perf_counter() - counter.t_first
    main_thread = sched_percent(counter.sched_first, main_thread_sched(os.getpid()), seconds)
    data = {**asdict(counter), "eps": counter.eps, "pid": os.getpid(), "main_thread_percent": main_thread,
            **(extra or {})}  # fmt: skip
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, result_file)
    os._exit(0)


def run_app(app: Any) -> None:
    """Run a faust app in the foreground on the current event loop."""
    from faust.worker import Worker

    from segstream.streams.app import quiet_worker

    worker = Worker(app, loglevel="warning", loop=asyncio.get_event_loop(), redirect_stdouts=False)
    quiet_worker(worker).execute_from_commandline()
