"""``segstream doctor``: is everything the worker needs there? One line per check, with how to fix it.

Exit code 0 when every check passes, 1 when one fails, 2 when a ``SEGSTREAM_*`` setting is invalid.
The checks live in :mod:`segstream.doctor`.
"""

from __future__ import annotations

import json
import sys

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, ok, detail, fix}.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds each service (broker, Redis) gets to answer.",
)
def doctor(as_json: bool, timeout: float) -> None:
    """Check the broker, Redis, the topics, the models root and the active bundle; say what to fix."""
    from segstream.doctor import run_checks
    from segstream.settings import Settings, settings_error_message

    try:
        settings = Settings.load()
    except Exception as exc:
        message = settings_error_message(exc)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    results = run_checks(settings, timeout=timeout)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            line = f"{'ok' if r.ok else 'FAIL':<4} {r.name:<{width}}  {r.detail}"
            if not r.ok and r.fix:
                line += f" \u2014 {r.fix}"
            click.echo(line)
    sys.exit(0 if all(r.ok for r in results) else 1)


COMMANDS = [doctor]
