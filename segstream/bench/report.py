"""The bench report: stable top-level JSON keys, machine and library info, and the printed table.

Stable top-level keys (:data:`STABLE_KEYS`): ``throughput_eps``, ``baseline_eps``, ``speedup``,
``latency_ms`` (``p50``, ``p95``, ``p99``), ``worker_rss_mb``, ``redis_bytes_per_customer``,
``faust_ceiling_eps``, ``ceiling_ratio``, ``two_workers_eps``, ``train_seconds``, ``machine``,
``versions``, ``settings``, ``micro``. A figure that was not measured (a skipped phase) is ``null``.
Everything else the run measured is under ``details``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

STABLE_KEYS: tuple[str, ...] = (
    "throughput_eps", "baseline_eps", "speedup", "latency_ms", "worker_rss_mb", "redis_bytes_per_customer",
    "faust_ceiling_eps", "ceiling_ratio", "two_workers_eps", "train_seconds", "machine", "versions", "settings",
    "micro",
)  # fmt: skip
LATENCY_KEYS: tuple[str, ...] = ("p50", "p95", "p99")
_LIBRARIES = ("segstream", "faust-streaming", "aiokafka", "kafka-python", "redis", "numpy", "scikit-learn",
              "pandas", "uvloop", "py-spy")  # fmt: skip

# Targets from the benchmark issue, shown next to the figures (never asserted).
TARGETS = {"ceiling_ratio": 0.75, "speedup": 10.0, "p99_ms": 100.0, "worker_rss_mb": 500.0}


def machine_info() -> dict[str, Any]:
    """CPU count, load, Python and platform."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "load_average": list(load) if load else None}  # fmt: skip


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries on the measured path (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def settings_used(settings: Any, ctx: Any) -> dict[str, Any]:
    """The settings every measured process ran with (secrets and URLs with passwords left out)."""
    from segstream.bench.faustapp import described_kwargs

    return {
        "faust_app": described_kwargs(settings),
        "worker": settings.worker.model_dump(),
        "partitions": ctx.partitions,
        "loop": "uvloop" if ctx.uvloop and _has("uvloop") else "asyncio",
        "consumer_fetch_max_wait_ms": ctx.fetch_max_wait_ms or settings.kafka.fetch_max_wait_ms,
        "kafka_bootstrap": settings.kafka.bootstrap_servers,
    }


def _has(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def build(results: dict[str, Any]) -> dict[str, Any]:
    """The report from the raw phase results (missing phases give nulls)."""
    worker = results.get("worker") or {}
    throughput = worker.get("eps")
    baseline = (results.get("baseline") or {}).get("eps")
    runs = [r["eps"] for r in results.get("ceiling_runs") or [] if r.get("eps")]
    # The mean of the runs before and after the worker (one run when only one was made).
    ceiling = sum(runs) / len(runs) if runs else (results.get("ceiling") or {}).get("eps")
    latency = (worker.get("latency") or {}).get("latency_ms") or {}
    rss = worker.get("rss") or {}
    memory = results.get("memory") or {}
    return {
        "throughput_eps": throughput,
        "baseline_eps": baseline,
        "speedup": _ratio(throughput, baseline),
        "latency_ms": {k: latency.get(k) for k in (*LATENCY_KEYS, "max")},
        "worker_rss_mb": rss.get("peak_rss_mb", rss.get("rss_mb")),
        "redis_bytes_per_customer": memory.get("bytes_per_customer"),
        "faust_ceiling_eps": ceiling,
        "ceiling_ratio": _ratio(throughput, ceiling),
        "two_workers_eps": (results.get("two_workers") or {}).get("eps"),
        "train_seconds": (results.get("training") or {}).get("train_seconds"),
        "machine": machine_info(),
        "versions": library_versions(),
        "settings": results.get("settings_used", {}),
        "micro": results.get("micro", {}),
        "targets": TARGETS,
        "details": {k: v for k, v in results.items() if k not in ("micro", "settings_used")},
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON."""
    Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")


def _fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _ceiling_note(details: dict[str, Any]) -> str:
    ceilings = details.get("ceiling_runs") or []
    runs = [r.get("eps") for r in ceilings]
    note = "mean of " + " (before) and ".join(_fmt(eps) for eps in runs) + " (after)" if len(runs) == 2 else ""
    return "; ".join(filter(None, [note, _main_thread_note([r.get("main_thread_percent") for r in ceilings])]))


def _main_thread_note(shares: list[dict[str, float] | None]) -> str:
    """``main thread on CPU 89%, waiting for one 8%`` (several runs joined with ``/``); empty when unknown."""
    known = [s for s in shares if s]
    if not known:
        return ""
    on_cpu = " / ".join(f"{s['on_cpu']:.0f}" for s in known)
    waiting = " / ".join(f"{s['runqueue']:.0f}" for s in known)
    return f"main thread on CPU {on_cpu}%, waiting for one {waiting}%"


def _cpu_note(cpu: dict[str, float] | None, generator: float | None = None) -> str:
    """The note ``CPU: worker 92%, redis 57%, kafka 13%`` (100% = one core), the load generator last when given."""
    shares = dict(cpu or {})
    if generator is not None:
        shares["load generator"] = generator
    return ("CPU: " + ", ".join(f"{name} {pct:.0f}%" for name, pct in shares.items())) if shares else ""


def _redis_row(worker: dict[str, Any]) -> tuple[str, str, str]:
    """Redis CPU per event (from INFO) at full speed and in the latency phase, the Lua scripts' share, AOF bytes."""
    from segstream.bench.redis_cost import scripts_us_per_event

    phases = [worker.get("redis_cost") or {}, (worker.get("latency") or {}).get("redis_cost") or {}]
    cpu = " / ".join(_fmt(p.get("cpu_us_per_event"), ".0f") for p in phases) + " us"
    lua = " / ".join(_fmt(scripts_us_per_event(p), ".0f") for p in phases)
    note = f"full speed / latency phase; in Lua scripts {lua} us"
    if any(p.get("aof_bytes_per_event") is not None for p in phases):
        note += "; AOF " + " / ".join(_fmt(p.get("aof_bytes_per_event"), ".0f") for p in phases) + " B"
    return "Redis CPU per event", cpu, note


def _redis_servers_note(redis: dict[str, Any]) -> str:
    """What the Redis figures sum over on a cluster (empty for a single server)."""
    if redis.get("kind") != "cluster":
        return ""
    masters, replicas = redis.get("masters", 0), redis.get("replicas", 0)
    return (f"redis = CPU of all {masters + replicas} cluster node processes ({masters} masters + {replicas} "
            f"replicas); memory and AOF bytes sum the {masters} masters")  # fmt: skip


def _redis_topology_row(report: dict[str, Any]) -> tuple[str, str, str] | None:
    """Single server or cluster, and its appendfsync (None for runs that did not record it)."""
    redis = (report.get("details") or {}).get("redis") or {}
    if not redis.get("kind"):
        return None
    value = ("single server" if redis["kind"] == "single"
             else f"cluster, {redis.get('masters')} masters + {redis.get('replicas')} replicas")  # fmt: skip
    used = (report.get("settings") or {}).get("redis") or {}
    fsync, fold = used.get("appendfsync"), used.get("fold")
    note = "; ".join(filter(None, [f"fold in {fold}" if fold else "", f"appendfsync {fsync}" if fsync else "",
                                   _redis_servers_note(redis)]))  # fmt: skip
    return "Redis", value, note


def _cpu_per_event_rows(details: dict[str, Any]) -> list[tuple[str, str, str]]:
    """CPU microseconds per event of each measured process and their sum, at full speed and in the latency phase."""
    worker = details.get("worker") or {}
    phases = [("full speed", worker.get("cpu_us_per_event")),
              ("latency phase", (worker.get("latency") or {}).get("cpu_us_per_event"))]  # fmt: skip
    out = []
    for label, per_event in phases:
        if not per_event:
            continue
        parts = ", ".join(f"{name} {us:.0f}" for name, us in per_event.items() if name != "sum")
        redis = details.get("redis") or {}
        nodes = redis.get("masters", 0) + redis.get("replicas", 0)
        where = f"; redis: all {nodes} cluster nodes (see Redis)" if redis.get("kind") == "cluster" else ""
        note = f"{parts} us (/proc CPU over processed events){where}"
        out.append((f"CPU per event, {label}", _fmt(per_event.get("sum"), ",.0f", " us"), note))
    return out


def _stages_row(latency: dict[str, Any]) -> tuple[str, str, str] | None:
    """Where produce -> scored went, mean and p99 per stage (None for runs without the split)."""
    stages = latency.get("stages_ms") or {}
    labels = {"generator": "tick", "to_scored": "to scored", "to_read": "read"}
    if not all((stages.get(name) or {}).get("mean") is not None for name in labels):
        return None
    value = " · ".join(
        f"{label} {stages[name]['mean']:.0f} / {stages[name]['p99']:.0f}" for name, label in labels.items()
    )
    note = ("mean / p99 ms; tick: the generator's send tick; to scored: broker, faust, batch wait, Redis, "
            "scoring, up to the scored record's timestamp; read: its produce and the bench's fetch")  # fmt: skip
    return "latency by stage", value + " ms", note


def _latency_note(latency: dict[str, Any]) -> str:
    """The p99 target, and whether Redis forked (rewrote its AOF) while latency was measured."""
    forks = (latency.get("redis_cost") or {}).get("forks")
    note = f"p99 <= {TARGETS['p99_ms']:.0f} ms"
    if forks:
        note += f"; Redis forked {forks}x meanwhile (an AOF rewrite or a snapshot)"
    return note


def _sweep_row(worker: dict[str, Any]) -> tuple[str, str, str] | None:
    """p99 at each swept rate, and the highest swept rate that met the p99 target (None without a sweep)."""
    points = [p for p in worker.get("latency_sweep") or [] if (p.get("latency_ms") or {}).get("p99") is not None]
    if not points:
        return None
    value = " · ".join(f"{p['offered_rate_eps']:,.0f}: {p['latency_ms']['p99']:.0f}" for p in points) + " ms"
    met = [p for p in points if p["latency_ms"]["p99"] <= TARGETS["p99_ms"]]
    if met:
        best = max(met, key=lambda p: p["offered_rate_eps"])
        note = (f"highest with p99 <= {TARGETS['p99_ms']:.0f} ms: {best['offered_rate_eps']:,.0f} ev/s "
                f"({best['fraction_of_throughput']:.2f} of throughput)")  # fmt: skip
    else:
        note = f"no swept rate met p99 <= {TARGETS['p99_ms']:.0f} ms"
    return "p99 by offered rate (ev/s)", value, note


def _memory_note(details: dict[str, Any]) -> str:
    memory = details.get("memory")
    if not memory:
        return ""
    servers = memory.get("servers") or 1
    return f"at {memory['customers']:,} customers" + (
        f"; used_memory of {servers} masters summed" if servers > 1 else ""
    )


def rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows of the summary table."""
    lat = report["latency_ms"]
    details = report.get("details", {})
    lat_detail = (details.get("worker") or {}).get("latency") or {}
    two = details.get("two_workers") or {}
    worker = details.get("worker") or {}
    out = [
        ("worker throughput", _fmt(report["throughput_eps"], unit=" ev/s"),
         "; ".join(filter(None, [_cpu_note(worker.get("cpu_percent")),
                                 _main_thread_note([worker.get("main_thread_percent")])]))),
        ("bare-faust ceiling", _fmt(report["faust_ceiling_eps"], unit=" ev/s"), _ceiling_note(details)),
        ("worker / ceiling", _fmt(report["ceiling_ratio"], ".2f"), f">= {TARGETS['ceiling_ratio']}"),
        ("naive baseline", _fmt(report["baseline_eps"], unit=" ev/s"), ""),
        ("speedup vs naive", _fmt(report["speedup"], ".1f", "x"), f">= {TARGETS['speedup']:.0f}x"),
        ("latency offered rate", _fmt(lat_detail.get("offered_rate_eps"), unit=" ev/s"),
         "; ".join(filter(None, [
             "fixed (--latency-rate)" if (details.get("config") or {}).get("latency_rate") else "half throughput",
             _cpu_note(lat_detail.get("cpu_percent"), lat_detail.get("load_generator_cpu_percent"))]))),
        ("latency p50 / p95 / p99",
         " / ".join(_fmt(lat.get(k), ".1f") for k in LATENCY_KEYS) + " ms", _latency_note(lat_detail)),
        *filter(None, [_stages_row(lat_detail), _sweep_row(worker)]),
        _redis_row(worker),
        *_cpu_per_event_rows(details),
        *filter(None, [_redis_topology_row(report)]),
        ("worker peak RSS", _fmt(report["worker_rss_mb"], ".0f", " MB"), f"<= {TARGETS['worker_rss_mb']:.0f} MB"),
        ("Redis bytes/customer", _fmt(report["redis_bytes_per_customer"], ",.0f", " B"),
         _memory_note(details)),
    ]  # fmt: skip
    if report["two_workers_eps"] is not None:
        per = ", ".join(f"{c:,.0f}" for c in two.get("per_worker_events", []))
        parity = (two.get("parity") or {}).get("exact")
        versus = _ratio(report["two_workers_eps"], report["throughput_eps"])
        note = (f"{_fmt(versus, '.2f', 'x')} one worker; per worker: {per}; "
                f"parity {'exact' if parity else 'NOT exact' if parity is False else '-'}")  # fmt: skip
        out.append(("two workers combined", _fmt(report["two_workers_eps"], unit=" ev/s"), note))
    rebalance = details.get("rebalance")
    if rebalance:
        parity = (rebalance.get("parity") or {}).get("exact")
        verdict = "exact" if parity else "NOT exact" if parity is False else "-"
        out.append(("parity after kill + join", verdict,
                    f"B killed after {rebalance['killed_after']:,.0f}, A alone after "
                    f"{rebalance['a_took_over_after']:,.0f}, B' joined after "
                    f"{rebalance['joined_after']:,.0f} of {rebalance['events']:,} events"))  # fmt: skip
    noise = details.get("noise")
    if noise and noise.get("changes_per_1000_events") is not None:
        out.append(("segment changes per 1,000 events", f"{noise['changes_per_1000_events']:.1f}",
                    f"flap rate {noise['flap_rate']:.1%} (back within {noise['flap_window_days']:g} days); "
                    f"tree disagrees with {_fmt(noise.get('tree_disagreement_share'), '.1%')} of changes"))  # fmt: skip
    training = details.get("training")
    if training:
        note = f"{training['rows']:,} rows (+{training['generate_seconds'] + training['clean_seconds']:.0f}s gen+clean)"
        out.append(("training time", _fmt(training["train_seconds"], ".1f", " s"), note + "; target <= 120 s"))
    scoring = (report.get("micro") or {}).get("scoring")
    if scoring:
        b500 = next((b for b in scoring["batches"] if b["batch"] == 500), None)
        equal = "equal" if scoring["labels_equal"] else f"{scoring['segment_mismatches']} mismatches"
        if b500:
            out.append(("scoring @500 numpy/sklearn", f"{b500['speedup']:.1f}x", f"labels {equal}"))
    return out


def print_table(report: dict[str, Any]) -> None:
    """Print the summary table (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="segstream bench")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target / note")
    for name, value, target in rows(report):
        table.add_row(name, value, target)
    Console().print(table)
