"""``segstream state migrate``: move a state store written by an older release to the current key layout."""

from __future__ import annotations

import click


@click.group("state")
def state() -> None:
    """The worker's state in Redis."""


@state.command("migrate")
@click.option("--to", "target_url", default=None,
              help="Write layout v2 to this Redis URL (e.g. redis+cluster://...); default: the same one.")  # fmt: skip
@click.option("--drop-v1", is_flag=True, help="Delete the v1 keys once they are copied.")
def migrate(target_url: str | None, drop_v1: bool) -> None:
    """Copy layout v1 state (SEGSTREAM_REDIS_URL, SEGSTREAM_REDIS_KEY_PREFIX) into layout v2.

    Stop the workers first, after they drained. Dedupe markers are not carried over (see the report).
    """
    from segstream.redis_clients import sync_client
    from segstream.settings import Settings, redact_url
    from segstream.streams.state.migrate import migrate_v1_to_v2

    settings = Settings.load()
    kwargs = settings.redis.client_kwargs()
    source = sync_client(settings.redis.url, **kwargs)
    target = sync_client(target_url, **kwargs) if target_url else source
    try:
        report = migrate_v1_to_v2(
            source, target, settings.redis.key_prefix, settings.redis.shards, drop_v1=drop_v1
        )
    finally:
        source.close()
        if target is not source:
            target.close()
    where = redact_url(target_url or settings.redis.url)
    click.echo(f"migrated {settings.redis.key_prefix}:v1 to layout v2 ({settings.redis.shards} shards) at {where}")
    for line in report.lines():
        click.echo(f"  {line}")


COMMANDS = [state]
