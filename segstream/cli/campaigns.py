"""``segstream campaigns``: check a rules file and preview what it would fire over a history."""

from __future__ import annotations

from pathlib import Path

import click

from segstream.cli.data import data_options, load_and_clean


@click.group()
def campaigns() -> None:
    """Campaign rules on segment changes: validate them and preview their audience."""


@campaigns.command("check")
@click.argument("rules", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Resolve segment names against this bundle (default: the model root's current one).")
def check(rules: Path, bundle: Path | None) -> None:
    """Validate a rules file; with a bundle, also that every segment it names exists."""
    from segstream.models.campaigns import load_rules, resolve

    parsed = load_rules(rules)
    serving, version = _serving(bundle)
    resolved = resolve(parsed, serving.names)
    click.echo(f"{rules}: {len(resolved)} campaign(s) valid against bundle {version}")


@campaigns.command("preview")
@click.argument("rules", type=click.Path(dir_okay=False, path_type=Path))
@data_options
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle to score with (default: the model root's current one).")
@click.option("--batch-size", type=click.IntRange(1), default=100, show_default=True,
              help="Events per evaluation. A live worker at low rates evaluates almost every event (1); a "
                   "full-speed replay forms batches of a few hundred, up to SEGSTREAM_WORKER_BATCH_SIZE.")
@click.option("--hysteresis", type=click.IntRange(1), default=1, show_default=True,
              help="Evaluations a new segment must hold, as SEGSTREAM_WORKER_HYSTERESIS_EVALUATIONS.")
@click.option("--dwell-days", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Event-time days a new segment must hold, as SEGSTREAM_WORKER_DWELL_DAYS.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the summary as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Backfill: every trigger that would have fired, as CSV or Parquet.")
def preview_command(rules: Path, data: str, map: tuple[str, ...], preset: str | None, bundle: Path | None,
                    batch_size: int, hysteresis: int, dwell_days: float, json_out: Path | None,
                    out: Path | None) -> None:  # fmt: skip
    """Play a history through scoring and the rules: triggers per campaign and week, unique customers."""
    import json

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from segstream.models.campaigns import load_rules, resolve
    from segstream.trainer.campaign_preview import preview
    from segstream.trainer.loading import write_table

    parsed = load_rules(rules)
    serving, version = _serving(bundle)
    resolved = resolve(parsed, serving.names)
    events, _ = load_and_clean(data, map, preset, echo=False)
    result = preview(events, serving, version, resolved, batch_size=batch_size, hold=hysteresis,
                     dwell_days=dwell_days)
    summary = {"bundle": version, **result.summary(resolved)}
    console = Console()
    console.print(f"{summary['events']:,} events, {summary['changes']:,} segment changes "
                  f"({summary['changes_per_1000_events'] or 0:.1f} per 1,000 events, "
                  f"{summary['moves_per_1000_events'] or 0:.1f} of them moves, "
                  f"{summary['flap_rate']:.1%} flap back within 7 days), bundle {version}")
    table = Table(title="campaigns over the history")
    for col in ("campaign", "trigger", "triggers", "customers", "suppressed", "busiest week"):
        table.add_column(col)
    for name, c in summary["campaigns"].items():
        busiest = max(c["per_week"].items(), key=lambda kv: kv[1]) if c["per_week"] else ("-", 0)
        suppressed = ", ".join(f"{k} {v:,}" for k, v in c["suppressed"].items()) or "-"
        table.add_row(name, c["trigger"], f"{c['triggers']:,}", f"{c['customers']:,}", suppressed,
                      f"{busiest[0]} ({busiest[1]:,})")  # fmt: skip
    console.print(table)
    for name, c in summary["campaigns"].items():
        for t in c["sample"][:3]:
            console.print(f"  {name}: {t['customer_id']} {t['previous_segment_name']} -> {t['segment_name']} at "
                          f"{pd.Timestamp(t['event_time_ms'], unit='ms', tz='UTC'):%Y-%m-%d}")  # fmt: skip
    if json_out:
        json_out.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        console.print(f"summary written to {json_out}")
    if out:
        rows = [{k: v for k, v in t.items() if k != "features"} | {f"f_{k}": v for k, v in t["features"].items()}
                for t in result.triggers]  # fmt: skip
        write_table(pd.DataFrame(rows), out)
        console.print(f"{len(rows):,} triggers written to {out}")


def _serving(bundle: Path | None):  # type: ignore[no-untyped-def]
    from segstream.models.bundle import load_bundle, read_manifest, resolve_current
    from segstream.models.features import FEATURE_SPEC
    from segstream.models.serving import SERVING
    from segstream.settings import ModelSettings

    settings = ModelSettings()
    target = Path(bundle) if bundle else resolve_current(settings.root)
    key = settings.signing_key.get_secret_value().encode() if settings.signing_key else None
    loaded = load_bundle(target, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING], signing_key=key)
    return loaded.artifact(SERVING), read_manifest(target).version


COMMANDS = [campaigns]
