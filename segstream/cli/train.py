"""Training commands: ``segstream train``, ``segstream report`` and ``segstream score``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from segstream.cli.data import data_options, load_and_clean, load_pushdown

if TYPE_CHECKING:
    from segstream.trainer.attributes import CustomerTable

_CUSTOMERS_HELP = ("Customer table, CSV or Parquet: one row per customer, a customer_id column and attribute "
                   "columns (demographics, credit, payment behaviour).")  # fmt: skip


def _customers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--customers-sql", "customers_sql", default=None, metavar="QUERY",
                        help="The customer table from this SQL query instead (on --db, as for --sql).")(func)
    return click.option("--customers", "customers", default=None, type=click.Path(dir_okay=False, path_type=str),
                        help=_CUSTOMERS_HELP)(func)  # fmt: skip


def _customer_source(customers: str | None, customers_sql: str | None, db: str | None) -> Any:
    """``--customers FILE`` or ``--customers-sql QUERY`` (on ``--db``) as one source, or None."""
    if customers is not None and customers_sql is not None:
        raise click.UsageError("give either --customers FILE or --customers-sql QUERY, not both")
    if customers_sql is None:
        return customers
    from segstream.cli.data import sql_source

    return sql_source(customers_sql, db)


def _load_customers(source: Any) -> CustomerTable | None:
    if source is None:
        return None
    from segstream.trainer.attributes import load_customers
    from segstream.trainer.sql_source import SqlSource, read_query

    if isinstance(source, SqlSource):
        return load_customers(read_query(source), where=source.label())
    return load_customers(source)


def _signing_key() -> bytes | None:
    from segstream.settings import ModelSettings

    key = ModelSettings().signing_key
    return key.get_secret_value().encode() if key else None


@click.command()
@data_options(required=False, pass_db=True)
@_customers_option
@click.option("--attributes", default=None, metavar="A,B,C",
              help="Customer table columns joined to the segmentation features (numeric: log, scaled; "
                   "categorical: one-hot, at most --max-levels levels, the rest 'other'). Default: none. "
                   "With --customers and no --data: a profile-only model on the attributes alone.")
@click.option("--max-levels", type=click.IntRange(1, 50), default=10, show_default=True,
              help="Levels kept per categorical attribute; rarer and unseen levels count as 'other'.")
@click.option("--preferences/--no-preferences", default=False, show_default=True,
              help="Join product preferences (share of spend in each of the top categories, the rest, and "
                   "how many categories) to the segmentation; needs events with a category or lines.")
@click.option("--top-categories", type=click.IntRange(1, 50), default=5, show_default=True,
              help="How many of the training data's categories get their own share (the rest is pooled).")
@click.option("--pushdown/--no-pushdown", default=False, show_default=True,
              help="With --sql on DuckDB: clean and aggregate inside the database, so only one row per "
                   "customer comes back (for histories too large to load; same features as without).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to create.")
@click.option("--k", type=click.IntRange(2, 20), default=None, help="Force the number of segments.")
@click.option("--k-min", type=click.IntRange(2, 20), default=4, show_default=True, help="Smallest k tried.")
@click.option("--k-max", type=click.IntRange(2, 20), default=8, show_default=True, help="Largest k tried.")
@click.option("--horizon", type=click.IntRange(7, 365), default=28, show_default=True,
              help="Forecast backtest horizon in days.")  # fmt: skip
@click.option("--previous", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Earlier bundle whose segment ids to keep where segments match.")  # fmt: skip
@click.option("--segmenter", type=click.Choice(["kmeans", "rfm"]), default="kmeans", show_default=True,
              help="K-Means on the customer features, or the classic RFM map (quintile scores, 11 named cells).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--promote/--no-promote", default=False, help="Make the new bundle `current` when done.")
def train(data: object, db: str | None, map: tuple[str, ...], preset: str | None, customers: str | None,
          customers_sql: str | None,
          attributes: str | None, max_levels: int, preferences: bool, top_categories: int, pushdown: bool,
          out: Path, k: int | None,
          k_min: int, k_max: int, horizon: int, previous: Path | None, segmenter: str, seed: int,
          promote: bool) -> None:  # fmt: skip
    """Train segmentation, classifier, purchase and forecast models; write a versioned bundle.

    With --customers FILE --attributes a,b,c the chosen customer attributes join the segmentation; with
    them and no --data the model is profile-only (segments, tree, names, report; no purchase/forecast).
    """
    import time

    from rich.console import Console
    from rich.table import Table

    from segstream.trainer.attributes import parse_attribute_names
    from segstream.trainer.pipeline import TrainOptions, train_bundle

    chosen = parse_attribute_names(attributes)
    customers = _customer_source(customers, customers_sql, db)
    if chosen and customers is None:
        raise click.UsageError("--attributes needs the customer table: --customers FILE")
    if customers is not None and not chosen:
        raise click.UsageError("--customers needs --attributes a,b,c (which columns to use)")
    if data is None and customers is None:
        raise click.UsageError("give the history as --data FILE or --sql QUERY [--db URL], or a customer table "
                               "with --customers FILE --attributes a,b,c for a profile-only model")  # fmt: skip
    if k_min > k_max:
        raise click.BadParameter(f"--k-min {k_min} is above --k-max {k_max}", param_hint="--k-min")
    console = Console()
    started = time.perf_counter()
    events, cleaning, source = None, None, str(customers)
    if pushdown and preferences:
        raise click.UsageError("--preferences reads every event's category in memory; drop --pushdown")
    if data is not None:
        events, report = load_pushdown(data, map, preset) if pushdown else load_and_clean(data, map, preset)
        cleaning, source = report.to_dict(), str(data)
    elif pushdown:
        raise click.UsageError("--pushdown needs the history as --sql QUERY")
    customer_table = _load_customers(customers)
    load_s = time.perf_counter() - started
    options = TrainOptions(k=k, k_range=range(k_min, k_max + 1), forecast_horizon_days=horizon, seed=seed,
                           previous_bundle=previous, signing_key=_signing_key(), segmenter=segmenter,
                           attributes=chosen, max_levels=max_levels,
                           preferences=top_categories if preferences else 0)  # fmt: skip
    with console.status("training") as status:
        result = train_bundle(
            events, out, options=options, cleaning=cleaning, source=source, customers=customer_table,
            progress=lambda stage, msg: status.update(f"{stage}: {msg}") if msg == "started"
            else console.print(f"  {stage:<13} {msg}"),
        )  # fmt: skip
    table = Table(title=f"bundle {result.version}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_row("load + clean", f"{load_s:.1f}")
    for stage, seconds in result.timings.items():
        table.add_row(stage, f"{seconds:.1f}")
    table.add_row("total", f"{time.perf_counter() - started:.1f}")
    console.print(table)
    _print_summary(console, result.metrics)
    console.print(f"bundle written to {result.bundle_dir}")
    if promote:
        from segstream.models.bundle import promote as promote_bundle

        promote_bundle(result.bundle_dir, signing_key=options.signing_key)
        console.print(f"promoted {result.version} to current")


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="HTML file (default: beside the bundle)."
)
def report(bundle: Path, out: Path | None) -> None:
    """Write an HTML report with plots of a bundle and print its summary table."""
    from rich.console import Console

    from segstream.models.bundle import read_manifest
    from segstream.trainer.report import write_report

    console = Console()
    target = write_report(bundle, out)
    _print_summary(console, read_manifest(bundle).metrics)
    console.print(f"report written to {target}")


@click.command()
@click.option("--bundle", required=True, type=click.Path(path_type=Path), help="Bundle directory.")
@data_options(required=False, pass_db=True)
@_customers_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .csv or .parquet.")
def score(bundle: Path, data: object, db: str | None, map: tuple[str, ...], preset: str | None,
          customers: str | None, customers_sql: str | None, out: Path) -> None:  # fmt: skip
    """Batch-score a history file: features, segment, name and predicted 90-day spend per customer.

    A bundle trained with customer attributes also needs --customers FILE; a profile-only one only that.
    """
    from segstream.trainer.loading import write_table
    from segstream.trainer.scoring import score_customers

    customers = _customer_source(customers, customers_sql, db)
    if data is None and customers is None:
        raise click.UsageError("give the history as --data FILE or --sql QUERY [--db URL] (and --customers FILE "
                               "for a bundle trained with attributes), or --customers FILE for a profile-only one")
    events = load_and_clean(data, map, preset)[0] if data is not None else None
    table = score_customers(bundle, events, signing_key=_signing_key(), customers=_load_customers(customers))
    write_table(table, out)
    click.echo(f"scored {len(table)} customers into {out}")


def _print_summary(console: object, metrics: dict) -> None:
    from rich.table import Table

    from segstream.trainer.report import summary_rows

    table = Table(title="model summary")
    for column in ("section", "metric", "value"):
        table.add_column(column)
    for row in summary_rows(metrics):
        table.add_row(*row)
    console.print(table)  # type: ignore[attr-defined]


COMMANDS = [train, report, score]
