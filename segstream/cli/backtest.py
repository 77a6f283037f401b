"""``segstream backtest``: train before a cutoff, judge segments and models on the unseen days after it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from segstream.cli.data import data_options, load_and_clean, parse_date


@click.command()
@data_options
@click.option("--cutoff", required=True, callback=parse_date,
              help="Train on events before this day (00:00 UTC); judge on the horizon from it.")
@click.option("--horizon", type=click.IntRange(7, 730), default=90, show_default=True,
              help="Days after the cutoff that judge the models.")
@click.option("--segmenter", type=click.Choice(["kmeans", "rfm"]), default="kmeans", show_default=True)
@click.option("--k-min", type=click.IntRange(2, 20), default=4, show_default=True)
@click.option("--k-max", type=click.IntRange(2, 20), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full result as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the backtest page (tables and plots) as HTML.")
@click.option("--keep-bundle", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the bundle trained before the cutoff here.")
def backtest(data: str, map: tuple[str, ...], preset: str | None, cutoff: dt.date, horizon: int, segmenter: str,
             k_min: int, k_max: int, seed: int, json_out: Path | None, html_out: Path | None,
             keep_bundle: Path | None) -> None:  # fmt: skip
    """Does the segmentation predict anything? Per segment repeat rate and spend after the cutoff, eta^2
    against the RFM map, spend models against BG/NBD + Gamma-Gamma, forecasts against seasonal naive."""
    import json

    from rich.console import Console

    from segstream.trainer.backtest import run_backtest
    from segstream.trainer.backtest_report import print_backtest, write_backtest_html
    from segstream.trainer.pipeline import TrainOptions

    if k_min > k_max:
        raise click.BadParameter(f"--k-min {k_min} is above --k-max {k_max}", param_hint="--k-min")
    console = Console()
    events, _ = load_and_clean(data, map, preset, echo=False)
    options = TrainOptions(k_range=range(k_min, k_max + 1), seed=seed, segmenter=segmenter)
    with console.status(f"backtesting at {cutoff} (training, scoring, forecasting)"):
        result = run_backtest(events, cutoff.isoformat(), horizon, options=options, source=str(data),
                              bundle_dir=keep_bundle)  # fmt: skip
    print_backtest(result, console)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        console.print(f"result written to {json_out}")
    if html_out:
        console.print(f"page written to {write_backtest_html(result, html_out)}")


COMMANDS = [backtest]
