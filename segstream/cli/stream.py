"""Streaming commands: ``worker``, ``replay``, ``customer``, ``rescore`` and ``demo``.

Thin: parse options, build settings, call into ``segstream.streams`` (and the trainer's loader for
``replay``), map errors to exit codes. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import click


def _settings() -> Any:
    from segstream.settings import Settings

    return Settings.load()


@click.command()
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level of the worker.",
)
@click.option(
    "--web-host",
    default="127.0.0.1",
    show_default=True,
    help="Interface for /health, /metrics and /customers/{id} (port: SEGSTREAM_WEB_PORT).",
)
@click.option("--no-uvloop", is_flag=True, help="Use the default asyncio loop even when uvloop is installed.")
def worker(loglevel: str, web_host: str, no_uvloop: bool) -> None:
    """Run the streaming worker: consume transactions, score, emit changes, forecasts and monitoring."""
    from segstream.streams.app import create_worker, run_worker, use_uvloop

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop_kind = "asyncio" if no_uvloop else use_uvloop()
    if loop_kind == "asyncio":
        asyncio.set_event_loop(asyncio.new_event_loop())
    settings = _settings()
    app, runtime = create_worker(settings, web_host=web_host)
    click.echo(
        f"worker {runtime.worker_id}: group {settings.worker.group_id}, topic "
        f"{settings.topics.transactions}, models {settings.models.root}, loop {loop_kind}",
        err=True,
    )
    run_worker(app, loglevel=loglevel)


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=str))
@click.option("--sql", default=None, metavar="QUERY", help="Replay the rows of this SQL query instead of a FILE.")
@click.option("--db", default=None, metavar="URL",
              help="Database for --sql (default: SEGSTREAM_DB_URL, else an in-memory DuckDB).")
@click.option(
    "--map",
    "map",
    multiple=True,
    metavar="CANONICAL=SOURCE",
    help="Use column SOURCE of the file as CANONICAL (as for train). Repeatable.",
)
@click.option("--preset", type=click.Choice(["online-retail"]), default=None, help="A known export layout.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="Messages per second.")
@click.option("--max-speed", is_flag=True, help="As fast as the client can (the default without --rate).")
@click.option("--topic", default=None, help="Target topic (default: SEGSTREAM_TOPIC_TRANSACTIONS).")
@click.option("--strict", is_flag=True, help="Send nothing if the worker would dead-letter any row.")
@click.option("--send-invalid", is_flag=True,
              help="Send the rows the worker will dead-letter too (to exercise the dead-letter path).")
def replay(
    file: str | None, sql: str | None, db: str | None, map: tuple[str, ...], preset: str | None,
    rate: float | None, max_speed: bool, topic: str | None, strict: bool, send_invalid: bool,
) -> None:
    """Produce a history FILE or --sql query (same loader and --map as train) to Kafka in timestamp order.

    Every row is first judged by the worker's own event contract, with the limits the worker reads
    (SEGSTREAM_EVENTS_*, SEGSTREAM_WORKER_MAX_FUTURE_SKEW_S): what it would dead-letter is reported by
    reason and, by default, not sent.
    """
    from segstream.streams.errors import ReplayError

    if rate is not None and max_speed:
        raise click.UsageError("use either --rate or --max-speed")
    if strict and send_invalid:
        raise click.UsageError("use either --strict or --send-invalid")
    from segstream.cli.data import history_source

    source = history_source(file, sql, db)
    settings = _settings()
    records, rejections = _replay_records(source, map, preset, settings.event_limits(), send_invalid)
    click.echo(rejections.render())
    if strict and rejections.total:
        raise ReplayError(f"--strict: the worker would dead-letter {rejections.total:,} rows of {source}; "
                          "nothing was sent")  # fmt: skip
    if not records:
        raise ReplayError(f"no row of {source} is valid for the worker; nothing was sent")
    target = topic or settings.topics.transactions
    result = _produce_with_progress(records, settings, target, rate)
    invalid = f", {rejections.total:,} of them invalid on purpose" if send_invalid and rejections.total else ""
    skipped = f"; {rejections.total:,} invalid rows not sent" if not send_invalid and rejections.total else ""
    click.echo(f"sent {result.sent:,} events to {target} in {result.seconds:.1f}s ({result.rate:,.0f}/s)"
               f"{invalid}{skipped}")  # fmt: skip


def _replay_records(source: Any, map: tuple[str, ...], preset: str | None, limits: Any, send_invalid: bool
                    ) -> tuple[list[dict[str, Any]], Any]:
    """The records to send (valid ones in timestamp order, then the invalid ones if asked) and the rejections."""
    import time

    from segstream.cli.data import load_raw
    from segstream.streams.replay import Rejections, records_from_frame, worker_verdict
    from segstream.trainer.cleaning import clean_prepared, prepare_rows
    from segstream.trainer.errors import DataFileError

    file = str(source)
    prepared = prepare_rows(load_raw(source, map, preset), file, limits=limits)
    rejections = Rejections(duplicates=int((prepared.codes == "duplicate_event").sum()))
    for code in dict.fromkeys(prepared.codes):
        if code not in ("", "duplicate_event"):
            rejections.counts[code] = int((prepared.codes == code).sum())
            rejections.examples[code] = prepared.first_rows(code)
    try:
        clean, _ = clean_prepared(prepared, file)
        records = records_from_frame(clean)
    except DataFileError:  # no valid row: the caller reports the rejections and what was sent
        records = []
    # The worker's own checks on exactly what will be sent: cleaning applies the same rules, so this finds
    # nothing unless the two drift apart, and then the row is held back rather than dead-lettered.
    now_ms = int(time.time() * 1000)
    refused = [(r, code) for r in records if (code := worker_verdict(r, limits, now_ms))]
    if refused:
        drift = {id(r) for r, _ in refused}
        records = [r for r in records if id(r) not in drift]
        for r, code in refused:
            rejections.counts[code] = rejections.counts.get(code, 0) + 1
            rejections.examples.setdefault(code, []).append(f"event {r.get('event_id')!r}")
    if send_invalid:
        bad = (prepared.codes != "") & (prepared.codes != "duplicate_event")
        records += [prepared.record(int(i)) for i in bad.nonzero()[0]]
    return records, rejections


def _produce_with_progress(records: list[dict[str, Any]], settings: Any, target: str, rate: float | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from segstream.streams.replay import replay as produce

    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("replay", total=len(records))
        return produce(records, settings.kafka, target, rate=rate, progress=lambda n: bar.update(task, completed=n))


async def _with_store(settings: Any, action: Any) -> Any:
    from segstream.streams.state import open_store

    store = open_store(
        settings.redis.url,
        prefix=settings.redis.key_prefix,
        dedupe_ttl_s=settings.redis.dedupe_ttl_s,
        shards=settings.redis.shards,
        **settings.redis.client_kwargs(),
    )
    try:
        return await action(store)
    finally:
        await store.close()


def _active_model(settings: Any, required: bool) -> Any:
    from segstream.streams.bundle_watch import ModelHolder

    key = settings.models.signing_key.get_secret_value().encode() if settings.models.signing_key else None
    holder = ModelHolder(settings.models.root, signing_key=key, require_signature=settings.models.require_signature)
    holder.poll()
    if required:
        return holder.require()
    return holder.active


@click.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (frequency, monetary, segment, ...).")
def customer(customer_id: str, as_json: bool) -> None:
    """Show a customer's live features, segment and recent changes from Redis."""
    from segstream.models.events import is_valid_customer_id
    from segstream.streams.customers import customer_document
    from segstream.streams.errors import StreamsError

    if not is_valid_customer_id(customer_id):
        raise StreamsError(f"customer id {customer_id!r} is not valid (printable, no spaces, 1..128 chars)")
    settings = _settings()
    model = _active_model(settings, required=False)
    doc = _run_store_call(settings, lambda store: customer_document(store, customer_id, model))
    if doc is None:
        raise StreamsError(f"customer {customer_id!r} is not in the live state at {_redis_where(settings)}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    _print_customer(doc)


def _redis_where(settings: Any) -> str:
    from segstream.settings import redact_url

    return redact_url(settings.redis.url)


def _run_store_call(settings: Any, action: Any) -> Any:
    import redis.exceptions

    from segstream.streams.errors import StoreUnavailableError

    try:
        return asyncio.run(_with_store(settings, action))
    except (redis.exceptions.ConnectionError, OSError) as exc:
        raise StoreUnavailableError(f"Redis at {_redis_where(settings)} is not reachable ({exc})") from exc


def _print_customer(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    name = doc["segment_name"] or "-"
    console.print(
        f"[bold]{doc['customer_id']}[/]  segment {doc['segment']} [bold]{name}[/]  "
        f"(model {doc['model_version']}, as of {doc['as_of']})"
    )
    table = Table("feature", "value")
    for key, value in doc["features"].items():
        table.add_row(key, f"{value:,.2f}")
    console.print(table)
    console.print(f"first purchase {doc['first_purchase_at']}   last purchase {doc['last_purchase_at']}")
    prefs = doc.get("preferences") or {}
    if prefs.get("spend"):
        console.print(f"favourite category [bold]{prefs['favourite_category'] or '-'}[/] "
                      f"({prefs['categories_bought']} categories bought)")  # fmt: skip
        spend = Table("category", "net spend", "share")
        for category, amount in prefs["spend"].items():
            spend.add_row(category, f"{amount:,.2f}", f"{prefs['share'][category]:.0%}")
        console.print(spend)
    if doc.get("profile"):
        console.print("profile: " + ", ".join(f"{k}={v}" for k, v in doc["profile"].items()))
    changes = Table("event time", "from", "to", "cause", "event")
    for item in doc["recent_changes"]:
        changes.add_row(
            str(item.get("event_time")),
            str(item.get("previous_segment_name")),
            str(item.get("segment_name")),
            str(item.get("cause")),
            str(item.get("event_id")),
        )
    console.print(changes)


@click.command()
def rescore() -> None:
    """Re-score every customer as of the current watermark (after a replay or a model change)."""
    from segstream.streams.pipeline import PipelineConfig
    from segstream.streams.sweep import rescore_all

    settings = _settings()
    model = _active_model(settings, required=True)
    config = PipelineConfig(
        scored_topic=settings.topics.scored, changes_topic=settings.topics.segment_changes,
        dead_letters_topic=settings.topics.dead_letters, hysteresis=settings.worker.hysteresis_evaluations,
        inactivity_threshold_days=settings.worker.inactivity_threshold_days,
        limits=settings.event_limits(),
    )  # fmt: skip

    async def go(store: Any) -> Any:
        producer = _AioProducer(settings)
        await producer.start()
        try:
            return await rescore_all(store, model, producer, config)
        finally:
            await producer.stop()

    result = _run_store_call(settings, go)
    click.echo(
        f"re-scored {result.evaluated:,} customers as of watermark {result.watermark_ms}: "
        f"{result.changes:,} segment changes"
    )


class _AioProducer:
    """An aiokafka producer with the pipeline's Producer interface (for commands outside the worker)."""

    def __init__(self, settings: Any) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), linger_ms=5)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        return await self._producer.send(topic, value, key=key)


def _demo() -> click.Command:
    from segstream.cli.demo_run import demo

    return demo


COMMANDS = [worker, replay, customer, rescore, _demo()]
