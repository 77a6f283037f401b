"""Training commands: ``segstream train``, ``segstream report`` and ``segstream score``."""

from __future__ import annotations

from pathlib import Path

import click

from segstream.cli.data import data_options, load_and_clean


def _signing_key() -> bytes | None:
    from segstream.settings import ModelSettings

    key = ModelSettings().signing_key
    return key.get_secret_value().encode() if key else None


@click.command()
@data_options
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
def train(data: str, map: tuple[str, ...], preset: str | None, out: Path, k: int | None, k_min: int, k_max: int,
          horizon: int, previous: Path | None, segmenter: str, seed: int, promote: bool) -> None:  # fmt: skip
    """Train segmentation, classifier, purchase and forecast models; write a versioned bundle."""
    import time

    from rich.console import Console
    from rich.table import Table

    from segstream.trainer.pipeline import TrainOptions, train_bundle

    console = Console()
    started = time.perf_counter()
    events, report = load_and_clean(data, map, preset)
    load_s = time.perf_counter() - started
    if k_min > k_max:
        raise click.BadParameter(f"--k-min {k_min} is above --k-max {k_max}", param_hint="--k-min")
    options = TrainOptions(k=k, k_range=range(k_min, k_max + 1), forecast_horizon_days=horizon, seed=seed,
                           previous_bundle=previous, signing_key=_signing_key(), segmenter=segmenter)  # fmt: skip
    with console.status("training") as status:
        result = train_bundle(
            events, out, options=options, cleaning=report.to_dict(), source=str(data),
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
@data_options
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output .csv or .parquet.")
def score(bundle: Path, data: str, map: tuple[str, ...], preset: str | None, out: Path) -> None:
    """Batch-score a history file: features, segment, name and predicted 90-day spend per customer."""
    from segstream.trainer.loading import write_table
    from segstream.trainer.scoring import score_customers

    events, _ = load_and_clean(data, map, preset)
    table = score_customers(bundle, events, signing_key=_signing_key())
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
