"""``segstream stack up|down|status|restart-redis`` and ``segstream topics create``.

The embedded stack is configured by ``SEGSTREAM_STACK_*`` (state dir, ports); topics by
``SEGSTREAM_TOPIC_*`` and the broker connection by ``SEGSTREAM_KAFKA_*``.
"""

from __future__ import annotations

import json
from typing import Any

import click


def _echo_status(status: dict[str, Any]) -> None:
    click.echo(f"state dir: {status['state_dir']}")
    for name in ("kafka", "redis"):
        info = status[name]
        where = info.get("bootstrap") or info.get("url")
        state = "running" if info["running"] else "stopped"
        answering = "answering" if info["answering"] else "not answering"
        pid = info["pid"] if info["pid"] is not None else "-"
        click.echo(f"{name:<6} {state:<8} pid={pid:<8} port={info['port']:<6} {answering:<14} {where}")
        click.echo(f"       log: {info['log']}")


@click.group("stack")
def stack_group() -> None:
    """Run the embedded dev stack: Tansu (Kafka-compatible, memory only) and Redis (AOF) on loopback."""


@stack_group.command("up")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for both services (default 30).")
@click.option(
    "--topics/--no-topics",
    default=True,
    show_default=True,
    help="Create the pipeline topics once the broker answers (Tansu forgets them on every restart).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def stack_up(timeout: float | None, topics: bool, as_json: bool) -> None:
    """Start the broker and Redis if they are not running (idempotent); wait until both answer."""
    import time

    from segstream.embedded import EmbeddedStack
    from segstream.settings import Settings

    settings = Settings.load()
    stack = EmbeddedStack.from_settings(settings.stack)
    started = time.monotonic()
    result: dict[str, Any] = dict(stack.up(timeout or settings.stack.start_timeout_s))
    if topics:
        from segstream.streams.topics import create_topics

        kafka = settings.kafka.model_copy(update={"bootstrap_servers": stack.kafka_bootstrap})
        result["topics_created"] = create_topics(kafka, settings.topics)
    result["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        click.echo(json.dumps({**result, "status": stack.status()}))
        return
    for name in ("kafka", "redis"):
        click.echo(f"{name}: {result[name]}")
    if topics:
        created = result["topics_created"]
        click.echo(f"topics created: {', '.join(created) if created else 'none (all existed)'}")
    click.echo(f"kafka bootstrap: {stack.kafka_bootstrap}   redis url: {stack.redis_url}")
    click.echo(f"ready in {result['seconds']:.2f}s (state dir {stack.state_dir})")


@stack_group.command("down")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def stack_down(as_json: bool) -> None:
    """Stop the broker and Redis (idempotent). Broker data is lost; Redis data stays in its AOF."""
    from segstream.embedded import EmbeddedStack
    from segstream.settings import StackSettings

    result = EmbeddedStack.from_settings(StackSettings()).down()
    if as_json:
        click.echo(json.dumps(result))
        return
    for name, outcome in result.items():
        click.echo(f"{name}: {outcome}")


@stack_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def stack_status(as_json: bool) -> None:
    """Show each service: running, pid, port, whether it answers, log file."""
    from segstream.embedded import EmbeddedStack
    from segstream.settings import StackSettings

    status = EmbeddedStack.from_settings(StackSettings()).status()
    if as_json:
        click.echo(json.dumps(status))
    else:
        _echo_status(status)


@stack_group.command("restart-redis")
@click.option("--kill", is_flag=True, help="SIGKILL instead of SIGTERM (simulates a crash).")
def stack_restart_redis(kill: bool) -> None:
    """Restart Redis alone; its append-only file restores every acknowledged write."""
    import signal

    from segstream.embedded import EmbeddedStack
    from segstream.settings import StackSettings

    settings = StackSettings()
    EmbeddedStack.from_settings(settings).restart_redis(
        signal.SIGKILL if kill else signal.SIGTERM, timeout=settings.start_timeout_s
    )
    click.echo("redis: restarted")


@click.group("topics")
def topics_group() -> None:
    """Manage the pipeline's Kafka topics."""


@topics_group.command("create")
@click.option("--partitions", type=click.IntRange(min=1), default=None, help="Partitions for new topics.")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the broker.")
def topics_create(partitions: int | None, connect_timeout: float) -> None:
    """Create the pipeline topics on SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS (existing topics are kept)."""
    from segstream.settings import Settings
    from segstream.streams.topics import create_topics

    settings = Settings.load()
    created = create_topics(settings.kafka, settings.topics, partitions, connect_timeout)
    existing = [name for name in settings.topics.names() if name not in created]
    click.echo(f"created: {', '.join(created) if created else 'none'}")
    click.echo(f"already existed: {', '.join(existing) if existing else 'none'}")


COMMANDS = [stack_group, topics_group]
