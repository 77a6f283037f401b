"""Where the worker's time goes: py-spy on a separate worker run, summarised by package and function.

The profiled run is not one of the measured runs (sampling costs CPU on a two-core box). py-spy records
from the worker's first processed event until it has processed the whole pre-loaded input, without idle
samples (time waiting in the event loop is left out) and without pausing the process (``--nonblocking``).
The collapsed stacks are summarised as: share of samples by the package of the innermost frame, the top
functions by self time, and inclusive shares of the worker's own stages.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from segstream.bench.errors import BenchError

# Innermost-frame file path fragments -> bucket name (first match wins).
_BUCKETS: tuple[tuple[str, str], ...] = (
    ("/segstream/models/", "segstream.models (features, scoring, parse)"),
    ("/segstream/streams/", "segstream.streams (pipeline, outputs, state)"),
    ("/faust/", "faust"),
    ("/mode/", "mode (faust runtime)"),
    ("/aiokafka/", "aiokafka"),
    ("/kafka/", "kafka-python"),
    ("/redis/", "redis-py"),
    ("/numpy/", "numpy"),
    ("/json/", "json"),
    ("/click/", "click (process entry: the event loop itself)"),
    ("/asyncio/", "asyncio"),
    ("/uvloop/", "uvloop"),
    ("/aiohttp/", "aiohttp"),
)
# Inclusive shares: a sample counts for a stage when any frame of its stack is this function.
_STAGES: dict[str, tuple[str, str]] = {
    "BatchProcessor.start (first phase: parse, apply, score, send)": ("start", "segstream/streams/pipeline.py"),
    "BatchProcessor._finish (second phase: deliveries, finalize)": ("_finish", "segstream/streams/pipeline.py"),
    "parse_event": ("parse_event", "segstream/models/events.py"),
    "store.apply (Redis round trip)": ("apply", "segstream/streams/state/redis_store.py"),
    "store.finalize (Redis round trip)": ("finalize", "segstream/streams/state/redis_store.py"),
    "evaluate (features + scoring)": ("evaluate", "segstream/streams/evaluate.py"),
    "scored_payload (JSON encode)": ("scored_payload", "segstream/streams/outputs.py"),
    "OutputBatch.send (producer buffer)": ("send", "segstream/streams/outputs.py"),
    "OutputBatch.wait_all (deliveries)": ("wait_all", "segstream/streams/outputs.py"),
}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>.*?)(?::\d+)?\)$")


def _split(frame: str) -> tuple[str, str]:
    """(function, file path) of a py-spy frame ``func (path:line)``."""
    m = _FRAME.match(frame)
    return (m["func"], m["path"]) if m else (frame, "")


def _short(frame: str) -> str:
    func, path = _split(frame)
    return f"{func} ({'/'.join(Path(path).parts[-2:])})" if path else func


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH (None when not installed)."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _bucket(frame: str) -> str:
    # py-spy prints paths relative to sys.path entries ("faust/streams.py") or absolute; match both.
    path = "/" + _split(frame)[1].lstrip("/")
    for fragment, name in _BUCKETS:
        if fragment in path:
            return name
    return "other (stdlib, C calls)"


def _is(func: str, name: str) -> bool:
    """True for ``name`` itself or a method of that name (py-spy prints ``Class.method``)."""
    return func == name or func.endswith("." + name)


def summarise(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Summary of py-spy's raw (collapsed) output: ``stack;frames count`` per line."""
    by_bucket: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        by_bucket[_bucket(leaf)] += count
        by_function[_short(leaf)] += count
        split = [_split(f) for f in frames]
        for stage, (func, fragment) in _STAGES.items():
            if any(_is(fn, func) and fragment in path for fn, path in split):
                stages[stage] += count
    if total == 0:
        return {"samples": 0}

    def share(counter: Counter[str], n: int | None = None) -> list[dict[str, Any]]:
        return [{"name": k, "percent": 100 * v / total} for k, v in counter.most_common(n)]

    return {"samples": total, "by_package": share(by_bucket), "top_functions": share(by_function, top),
            "stages_inclusive": share(stages)}  # fmt: skip


def profile_worker(ctx: Any, rate_hz: int = 250) -> dict[str, Any]:
    """Run one more worker (own group and prefix) on the pre-loaded input under py-spy and summarise it."""
    from segstream.bench.phases import Sampler, start_worker
    from segstream.bench.procs import watch_count

    exe = py_spy()
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out_file = ctx.work_dir / "profile.collapsed"
    child, port = start_worker(ctx, "worker-profiled", "main", f"{ctx.run_id}-profiled", f"{ctx.run_id}:profiled")
    spy: subprocess.Popen[bytes] | None = None
    try:
        sampler = Sampler(ctx, child, port)

        def attach() -> None:
            nonlocal spy
            argv = [exe, "record", "--pid", str(child.pid), "--rate", str(rate_hz), "--format", "raw",
                    "--output", str(out_file), "--nonblocking"]  # fmt: skip
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603

        sampler.on_first = attach
        n = len(ctx.workload)
        window = watch_count([sampler], n, ctx.timeout(n) * 2, on_poll=child.check_alive)
        if spy is None:
            raise BenchError("py-spy was never attached to the profiled worker")
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if not out_file.exists():
            return {"error": f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}"}
        return {"eps_while_profiled": window.eps, "rate_hz": rate_hz, **summarise(out_file.read_text())}
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        child.stop()
