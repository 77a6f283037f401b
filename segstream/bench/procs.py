"""Child processes of the bench: start with an environment, watch CPU and memory, poll /metrics, stop.

Only processes started here are ever signalled, always by their own pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.bench.errors import BenchError

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def segstream_command(*args: str) -> list[str]:
    """``segstream ARGS`` through the console script next to this interpreter (or ``python -c``)."""
    script = Path(sys.executable).parent / "segstream"
    if script.exists():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-c", "from segstream.cli.main import main; main()", *args]


def module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone or not on Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_seconds_of(pids: Sequence[int]) -> float:
    """User + system CPU seconds so far of several processes together (e.g. every node of a Redis Cluster)."""
    return sum(cpu_seconds(pid) for pid in pids)


def cpu_us_per_event(before: dict[str, float], after: dict[str, float], events: float) -> dict[str, float]:
    """CPU microseconds per event of each process between two CPU-seconds snapshots, and ``sum`` of them all.

    ``{}`` when no event was processed in between. A process missing from either snapshot is left out.
    """
    if events <= 0:
        return {}
    out = {k: 1e6 * (after[k] - before[k]) / events for k in before if k in after}
    return {**out, "sum": sum(out.values())} if out else {}


def main_thread_sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread so far.

    From ``/proc/<pid>/schedstat`` (the thread-group leader's); (0, 0) when it is gone or not on Linux. The
    main thread runs the event loop, faust's per-event work and the pipeline: time it spends runnable but
    waiting is CPU taken by the broker and Redis sharing the machine.
    """
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def sched_percent(before: tuple[float, float], after: tuple[float, float], seconds: float) -> dict[str, float]:
    """``on_cpu`` and ``runqueue`` shares (100 = the whole interval) between two :func:`main_thread_sched` reads."""
    if seconds <= 0 or after == (0.0, 0.0):
        return {}
    return {"on_cpu": 100 * (after[0] - before[0]) / seconds, "runqueue": 100 * (after[1] - before[1]) / seconds}


def rss_mb(pid: int) -> dict[str, float]:
    """Current (``VmRSS``) and peak (``VmHWM``) resident memory of a process in MB (empty when gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out["rss_mb" if name == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


@dataclass
class Child:
    """A started child process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> Child:
        """Start ``argv`` with ``env`` added to this process's environment, output to ``<log_dir>/<name>.log``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(list(argv), env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        return cls(name, proc, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise BenchError with the log tail when the process has exited."""
        if not self.alive():
            raise BenchError(f"{self.name} exited with code {self.proc.returncode}; log {self.log_path}:\n"
                             f"{self.log_tail()}")  # fmt: skip

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_result_file(child: Child, path: Path, timeout: float) -> dict[str, Any]:
    """Wait until ``child`` wrote its JSON result to ``path`` (and exited); raise BenchError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            child.stop(timeout=5)
            return dict(json.loads(path.read_text()))
        child.check_alive()
        time.sleep(0.1)
    child.stop()
    raise BenchError(f"{child.name} did not finish within {timeout:.0f}s; log {child.log_path}:\n{child.log_tail()}")


def read_metrics(port: int, timeout: float = 2.0, labelled: bool = False) -> dict[str, float] | None:
    """The samples of a worker's ``/metrics`` (None while it does not answer).

    Unlabelled ones only, unless ``labelled``: then e.g. ``segstream_stage_seconds_total{stage="apply"}`` too,
    under that whole name.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and (labelled or "{" not in line):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def by_label(metrics: dict[str, float], name: str, label: str) -> dict[str, float]:
    """Label value -> sample of one labelled metric in a labelled :func:`read_metrics` read.

    E.g. ``by_label(m, "segstream_stage_seconds_total", "stage")`` gives ``{"apply": 1.5, ...}``.
    """
    prefix = f'{name}{{{label}="'
    return {k[len(prefix) : -2]: v for k, v in metrics.items() if k.startswith(prefix)}


def consumer_lag(metrics: dict[str, float]) -> dict[str, float]:
    """Partition -> lag from a labelled :func:`read_metrics` read (the partitions the worker holds)."""
    return by_label(metrics, "segstream_consumer_lag", "partition")


def batch_profile(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batches between two labelled ``/metrics`` reads: how many, mean size, and ms per batch in each stage."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    def deltas(name: str, label: str) -> dict[str, float]:
        earlier = by_label(before, name, label)
        return {k: v - earlier.get(k, 0.0) for k, v in by_label(after, name, label).items()}

    batches = delta("segstream_batches_total")
    events = delta("segstream_events_processed_total")
    stages = deltas("segstream_stage_seconds_total", "stage")
    return {
        "batches": batches,
        "mean_events_per_batch": events / batches if batches else None,
        "ms_per_batch": {k: 1000 * v / batches for k, v in stages.items()} if batches else {},
        "ms_per_batch_total": 1000 * delta("segstream_batch_seconds_total") / batches if batches else None,
        # Garbage collections in the same span, per generation: each one paused the event loop.
        "gc_collections": deltas("segstream_gc_collections_total", "generation"),
        "gc_ms": {k: 1000 * v for k, v in deltas("segstream_gc_seconds_total", "generation").items()},
    }


@dataclass
class CountWindow:
    """A counter watched from its first increase to a target.

    Attributes:
        t_first: When a poll first saw a count above zero (``perf_counter``); ``c_first`` that count.
        t_end: When a poll first saw the target reached; ``c_end`` that count.
        per_source: The last count of every source (e.g. per worker).
    """

    t_first: float
    c_first: float
    t_end: float
    c_end: float
    per_source: list[float]

    @property
    def eps(self) -> float:
        """Sustained rate between the first increase and the target (0 when it was seen only once)."""
        span = self.t_end - self.t_first
        return (self.c_end - self.c_first) / span if span > 0 else 0.0


def watch_count(
    sources: Sequence[Callable[[], float | None]],
    target: float,
    timeout: float,
    on_poll: Callable[[], None] | None = None,
    interval: float = 0.2,
) -> CountWindow:
    """Poll counters (summed) until they reach ``target``; raise BenchError on timeout.

    ``timeout`` counts from the first increase, plus a generous start-up allowance (group joins).
    """
    start = time.monotonic()
    t_first = c_first = None
    last: list[float] = [0.0] * len(sources)
    while True:
        now = time.perf_counter()
        values = [s() for s in sources]
        last = [v if v is not None else last[i] for i, v in enumerate(values)]
        total = sum(last)
        if t_first is None and total > 0:
            t_first, c_first = now, total
        if total >= target and t_first is not None:
            return CountWindow(t_first, float(c_first or 0), now, total, last)
        limit = timeout if t_first is not None else timeout + 120
        if time.monotonic() - start > limit:
            raise BenchError(f"counters reached {total:.0f} of {target:.0f} within {limit:.0f}s")
        if on_poll is not None:
            on_poll()
        time.sleep(interval)
