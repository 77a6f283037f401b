"""``segstream dead-letters``: what the worker refused, by reason; ``dead-letters replay``: send it again.

Thin: parse options, read the topic with :mod:`segstream.streams.dead_letters`, print, map errors.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import click

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(value: str | None) -> int | None:
    """``--since``: a span back from now (``30m``, ``2h``, ``7d``) or an ISO time (naive = UTC), as epoch ms."""
    if value is None:
        return None
    text = value.strip()
    if match := _RELATIVE.match(text):
        return int((time.time() - float(match[1]) * _UNIT_S[match[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a span like 2h or 7d nor an ISO time",
                                 param_hint="--since") from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


_since = click.option("--since", default=None, metavar="WHEN",
                      help="Only dead letters from then on: a span back from now (30m, 2h, 7d) or an ISO time.")


def _settings() -> Any:
    from segstream.settings import Settings

    return Settings.load()


@click.group("dead-letters", invoke_without_command=True)
@_since
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def dead_letters(ctx: click.Context, since: str | None, as_json: bool) -> None:
    """Summarise the dead-letter topic by reason code (what the worker refused, and why)."""
    if ctx.invoked_subcommand is not None:
        return
    from segstream.streams.dead_letters import read_dead_letters, summarise

    settings = _settings()
    summary = summarise(read_dead_letters(settings.kafka, settings.topics.dead_letters, parse_since(since)))
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else summary.render())


@dead_letters.command("replay")
@click.option("--reason", "reasons", multiple=True, metavar="CODE",
              help="Only dead letters with this reason code (repeatable); default: all.")
@_since
@click.option("--topic", default=None,
              help="Where to send them (default: the input topic each came from, transactions or customer-profiles).")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
def replay_dead_letters(reasons: tuple[str, ...], since: str | None, topic: str | None, dry_run: bool) -> None:
    """Send chosen dead letters to the topic they were refused on again, byte for byte, after a fix.

    Each event keeps its event_id, so the worker folds an event once however often it is replayed; a
    profile is simply written again.
    """
    from segstream.streams.dead_letters import read_dead_letters, select
    from segstream.streams.replay import replay

    settings = _settings()
    letters = read_dead_letters(settings.kafka, settings.topics.dead_letters, parse_since(since))
    chosen, lost = select(letters, reasons)
    inputs = {settings.topics.transactions, settings.topics.customer_profiles}
    by_target: dict[str, list] = {}
    for letter in chosen:
        target = topic or (letter.topic if letter.topic in inputs else settings.topics.transactions)
        by_target.setdefault(target, []).append(letter)
    which = ", ".join(reasons) if reasons else "any reason"
    note = f" ({lost:,} more cannot be replayed: the original was truncated or empty)" if lost else ""
    if dry_run or not chosen:
        where = ", ".join(f"{len(v):,} to {t}" for t, v in by_target.items())
        where = where or f"to {topic or settings.topics.transactions}"
        click.echo(f"would send {len(chosen):,} dead letters ({which}): {where}{note}")
        return
    for target, group in by_target.items():
        result = replay((), settings.kafka, target, raw_values=[(d.key, d.raw) for d in group])
        click.echo(f"sent {result.sent:,} dead letters ({which}) to {target} in {result.seconds:.1f}s{note}")


COMMANDS = [dead_letters]
