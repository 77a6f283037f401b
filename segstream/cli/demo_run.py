"""``segstream demo``: the whole pipeline on a private embedded stack, live in the terminal.

Steps: stack up (its own state dir and ports, so it never mixes with another stack), generate a history,
train and promote a bundle, create the topics, start the worker (a subprocess), replay the history, and
show processing, segment changes, the segment mix and the sales forecast live with rich. Ends with a
summary; Ctrl-C (or the end) stops the worker and takes the stack down (``--keep`` leaves it up).
The steps call the public CLI commands in subprocesses, so the demo depends on no internals.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

_MAIN = "from segstream.cli.main import main; main()"


@dataclass
class LiveState:
    """What the background readers collect and the screen shows."""

    sent: int = 0
    total: int = 0
    replay_rate: float = 0.0
    replay_done: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    changes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    # Moves between segments (not first assignments): what a campaign reacts to, shown first.
    moves: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    names: dict[str, str] = field(default_factory=dict)
    change_counts: dict[str, int] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    forecast: dict[str, dict[str, Any]] = field(default_factory=dict)
    forecast_at: str | None = None
    peak_rate: float = 0.0
    first_processed_at: float | None = None
    last_processed_at: float | None = None
    last_processed: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


def _run(args: list[str], env: dict[str, str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run([sys.executable, "-c", _MAIN, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)  # fmt: skip
    if proc.returncode != 0:
        raise click.ClickException(f"{what} failed (exit {proc.returncode}); see {log}")


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


def _tail_topics(settings: Any, state: LiveState) -> None:
    """Follow segment-changes, monitoring and sales-forecasts from the beginning (no consumer group)."""
    from kafka import KafkaConsumer

    t = settings.topics
    consumer = KafkaConsumer(t.segment_changes, t.monitoring, t.sales_forecasts, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             **settings.kafka.kafka_python_kwargs())  # fmt: skip
    try:
        while not state.stop.is_set():
            for tp, messages in consumer.poll(timeout_ms=300).items():
                for message in messages:
                    try:
                        value = json.loads(message.value)
                    except ValueError:
                        continue
                    if tp.topic == t.segment_changes:
                        state.changes.append(value)
                        state.names[str(value.get("segment"))] = str(value.get("segment_name"))
                        if value.get("previous_segment") is not None:
                            state.moves.append(value)
                        cause = value.get("cause", "?")
                        state.change_counts[cause] = state.change_counts.get(cause, 0) + 1
                    elif tp.topic == t.monitoring:
                        state.monitoring = value
                        state.peak_rate = max(state.peak_rate, float(value.get("events_per_s") or 0))
                    elif value.get("series") == "total":
                        if value.get("generated_at") != state.forecast_at:
                            state.forecast_at = value.get("generated_at")
                            state.forecast = {}
                        state.forecast[f"{value['model']}|{value['date']}"] = value
    finally:
        consumer.close()


def _screen(state: LiveState, started: float) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    m = state.metrics
    processed = m.get("segstream_events_processed_total", 0)
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"replayed [bold]{state.sent:,}[/]/{state.total:,}"
        + (f" ({state.replay_rate:,.0f}/s)" if state.replay_done else ""),
        f"processed [bold]{processed:,.0f}[/]",
        f"rate [bold]{state.monitoring.get('events_per_s', 0):,.0f}[/]/s (peak {state.peak_rate:,.0f})",
        f"dead letters {m.get('segstream_dead_letters_total', 0):,.0f}",
        f"duplicates {m.get('segstream_duplicates_total', 0):,.0f}",
        f"lag {m.get('segstream_consumer_lag_total', 0):,.0f}",
        f"{time.monotonic() - started:,.0f}s",
    )  # fmt: skip
    changes = Table("event time", "customer", "from", "to", "cause", title="latest segment changes", expand=True)
    moves = list(state.moves)[::-1]
    firsts = [c for c in list(state.changes)[::-1] if c.get("previous_segment") is None]
    names = state.names
    for c in (moves + firsts)[:12]:
        changes.add_row(
            str(c.get("event_time", ""))[:19],
            c.get("customer_id", ""),
            str(c.get("previous_segment_name") or "-"),
            str(c.get("segment_name")),
            c.get("cause", ""),
        )
    mix = Table("segment", "live", "training", title=f"segment mix (PSI {state.monitoring.get('drift_psi')})")
    seg_mix = state.monitoring.get("segment_mix") or {}
    live, training = seg_mix.get("live", {}), seg_mix.get("training", {})
    for seg in sorted(set(live) | set(training), key=lambda s: int(s)):
        label = f"{seg} {names[seg]}" if names.get(seg) else seg
        mix.add_row(label, f"{live.get(seg, 0):.1%}", f"{training.get(seg, 0):.1%}")
    rows = sorted(state.forecast.values(), key=lambda r: (r["date"], r["model"]))
    shown = [r for r in rows if r["model"] == "random_forest"][:7] or rows[:7]
    model = shown[0]["model"] if shown else "-"
    forecast = Table("day", "yhat", "80% band", title=f"total sales forecast ({model})")
    for r in shown:
        forecast.add_row(r["date"][5:], f"{r['yhat']:,.0f}", f"{r['lower']:,.0f}-{r['upper']:,.0f}")
    side = Table.grid(padding=(0, 2))
    side.add_row(mix, forecast)
    return Panel(Group(head, changes, side), title="segstream demo", subtitle="Ctrl-C to stop")


@click.command()
@click.option(
    "--customers", type=click.IntRange(min=10), default=3000, show_default=True, help="Customers to generate."
)
@click.option("--days", type=click.IntRange(min=30), default=365, show_default=True, help="Days of history.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the generator.")
@click.option("--rate", type=click.FloatRange(min=1), default=None, help="Replay rate in events/s (default: max).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".segstream/demo"),
    show_default=True,
    help="Where the demo's stack, data, models and logs live (wiped at start).",
)
@click.option("--kafka-port", type=int, default=19192, show_default=True, help="Port of the demo broker.")
@click.option("--redis-port", type=int, default=16479, show_default=True, help="Port of the demo Redis.")
@click.option("--web-port", type=int, default=6067, show_default=True, help="Port of the worker's HTTP endpoints.")
@click.option(
    "--linger",
    type=float,
    default=12.0,
    show_default=True,
    help="Seconds to keep watching after every event was processed (sweeps, forecasts).",
)
@click.option("--keep", is_flag=True, help="Leave the stack running at the end (e.g. for the dashboard).")
def demo(
    customers: int,
    days: int,
    seed: int,
    rate: float | None,
    state_dir: Path,
    kafka_port: int,
    redis_port: int,
    web_port: int,
    linger: float,
    keep: bool,
) -> None:
    """Run everything on a private embedded stack and watch it live: generate, train, stream, score, forecast."""
    from rich.console import Console
    from rich.live import Live

    from segstream.cli.data import load_and_clean
    from segstream.embedded import EmbeddedStack
    from segstream.settings import KafkaSettings, ModelSettings, RedisSettings, Settings, StackSettings
    from segstream.streams.replay import records_from_frame, replay
    from segstream.streams.topics import create_topics

    console = Console()
    state_dir = state_dir.resolve()
    stack = EmbeddedStack(state_dir / "stack", kafka_port=kafka_port, redis_port=redis_port)
    marker = state_dir / ".segstream-demo"
    if state_dir.exists() and any(state_dir.iterdir()) and not marker.exists():
        raise click.UsageError(f"{state_dir} is not empty and was not made by the demo; pick another --state-dir")
    stack.down()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    marker.touch()
    log = state_dir / "demo.log"
    worker: subprocess.Popen[bytes] | None = None
    state = LiveState()
    started = time.monotonic()
    try:
        with console.status("starting the embedded stack (Tansu + Redis)"):
            stack.up(timeout=30)
        settings = Settings.load(
            kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap), redis=RedisSettings(url=stack.redis_url),
            models=ModelSettings(root=state_dir / "models"),
            stack=StackSettings(state_dir=state_dir / "stack", kafka_port=kafka_port, redis_port=redis_port),
        )  # fmt: skip
        env = dict(os.environ)
        env.update({
            "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "SEGSTREAM_REDIS_URL": stack.redis_url,
            "SEGSTREAM_MODEL_ROOT": str(state_dir / "models"), "SEGSTREAM_STACK_STATE_DIR": str(state_dir / "stack"),
            "SEGSTREAM_STACK_KAFKA_PORT": str(kafka_port), "SEGSTREAM_STACK_REDIS_PORT": str(redis_port),
            "SEGSTREAM_WEB_PORT": str(web_port), "SEGSTREAM_WORKER_MONITORING_INTERVAL_S": "2",
            "SEGSTREAM_WORKER_FORECAST_REFRESH_INTERVAL_S": "10", "SEGSTREAM_WORKER_BATCH_SIZE": "2000",
        })  # fmt: skip
        console.print(f"stack up: kafka {stack.kafka_bootstrap}, redis {stack.redis_url}")
        data = state_dir / "transactions.csv"
        with console.status(f"generating {customers:,} customers over {days} days"):
            _run(["generate", "--customers", str(customers), "--days", str(days), "--seed", str(seed),
                  "--out", str(data)], env, "generate", log)  # fmt: skip
        with console.status("training (segmentation, classifier, purchase model, forecasts)"):
            t0 = time.monotonic()
            _run(["train", "--data", str(data), "--out", str(state_dir / "models" / "demo"), "--promote"], env,
                 "train", log)  # fmt: skip
        console.print(f"trained and promoted a bundle in {time.monotonic() - t0:.1f}s")
        create_topics(settings.kafka, settings.topics)
        worker_log = (state_dir / "worker.log").open("ab")  # noqa: SIM115 - the worker process owns it
        worker = subprocess.Popen([sys.executable, "-c", _MAIN, "worker"], env=env, stdout=worker_log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        events, _ = load_and_clean(str(data), (), None, echo=False)
        records = records_from_frame(events)
        state.total = len(records)
        with console.status("waiting for the worker to join its consumer group"):
            _wait_for_worker(worker, web_port, state_dir / "worker.log")
        threading.Thread(target=_tail_topics, args=(settings, state), daemon=True).start()

        def produce() -> None:
            result = replay(records, settings.kafka, settings.topics.transactions, rate=rate,
                            progress=lambda n: setattr(state, "sent", n))  # fmt: skip
            state.replay_rate, state.replay_done = result.rate, True

        threading.Thread(target=produce, daemon=True).start()
        all_done_at: float | None = None
        with Live(_screen(state, started), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(0.25)
                if worker.poll() is not None:
                    raise click.ClickException(
                        f"the worker exited ({worker.returncode}); see {state_dir / 'worker.log'}"
                    )
                try:
                    state.metrics = _metrics(web_port)
                except OSError:
                    pass
                _note_progress(state)
                live.update(_screen(state, started))
                handled = state.metrics.get("segstream_events_processed_total", 0) + state.metrics.get(
                    "segstream_dead_letters_total", 0) + state.metrics.get("segstream_duplicates_total", 0)  # fmt: skip
                if state.replay_done and handled >= state.total and all_done_at is None:
                    all_done_at = time.monotonic()
                if all_done_at is not None and time.monotonic() - all_done_at >= linger:
                    break
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; cleaning up[/]")
    finally:
        state.stop.set()
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if not keep:
            stack.down()
    _summary(console, state, started, keep, stack)


def _wait_for_worker(worker: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited ({worker.returncode}); see {log}")
        try:
            _metrics(port)
            if "Worker]: Ready" in log.read_text(errors="replace"):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise click.ClickException(f"the worker did not start within {timeout:.0f}s; see {log}")


def _note_progress(state: LiveState) -> None:
    processed = state.metrics.get("segstream_events_processed_total", 0)
    now = time.monotonic()
    if processed > state.last_processed:
        if state.first_processed_at is None:
            state.first_processed_at = now
        state.last_processed_at = now
        state.last_processed = processed


def _summary(console: Any, state: LiveState, started: float, keep: bool, stack: Any) -> None:
    from rich.table import Table

    m = state.metrics
    span = (state.last_processed_at or 0) - (state.first_processed_at or 0)
    average = state.last_processed / span if span > 0 else 0.0
    table = Table("summary", "value", title="segstream demo")
    table.add_row("events replayed", f"{state.sent:,} of {state.total:,} ({state.replay_rate:,.0f}/s)")
    table.add_row("events scored", f"{m.get('segstream_events_processed_total', 0):,.0f}")
    table.add_row("worker events/s", f"peak {state.peak_rate:,.0f} (2 s window), average {average:,.0f}")
    table.add_row(
        "dead letters / duplicates",
        f"{m.get('segstream_dead_letters_total', 0):,.0f} / {m.get('segstream_duplicates_total', 0):,.0f}",
    )
    table.add_row("segment changes", ", ".join(f"{k}: {v:,}" for k, v in sorted(state.change_counts.items())) or "0")
    table.add_row("drift (PSI vs training)", str(state.monitoring.get("drift_psi")))
    table.add_row("forecast rows (total)", f"{len(state.forecast)} (generated {state.forecast_at})")
    table.add_row("wall time", f"{time.monotonic() - started:,.1f}s")
    console.print(table)
    if keep:
        console.print(f"stack left running: SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap} "
                      f"SEGSTREAM_REDIS_URL={stack.redis_url}")  # fmt: skip
