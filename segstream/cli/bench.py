"""``segstream bench``: measure the worker against faust's ceiling and the naive path, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _parse_fractions(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """``0.1,0.2`` -> (0.1, 0.2); ``none`` or an empty string -> () (no sweep); None -> the config's default."""
    if value is None:
        return None
    if value.strip().lower() in ("", "none"):
        return ()
    fractions = []
    for part in value.split(","):
        try:
            fraction = float(part)
        except ValueError:
            raise click.BadParameter(f"{part.strip()!r} is not a number (example: 0.1,0.2,0.3)") from None
        if not 0 < fraction <= 2:
            raise click.BadParameter(f"{fraction} is not a fraction of throughput in (0, 2]")
        fractions.append(fraction)
    return tuple(fractions)


@click.command()
@click.option(
    "--events",
    type=click.IntRange(min=100),
    default=None,
    help="Events pre-loaded for the ceiling and the worker.  [default: 100000; --quick 15000]",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=None,
    help="Customers the events are spread over.  [default: 10000; --quick 2000]",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full report (all figures, machine info, versions) to this file.",
)
@click.option("--quick", is_flag=True, help="CI size: small counts, short latency phase, no second worker.")
@click.option(
    "--baseline-events",
    type=click.IntRange(min=100),
    default=None,
    help="Events for the naive baseline (default: events/10, at least 1000).",
)
@click.option(
    "--baseline-seconds",
    "baseline_budget_s",
    type=click.FloatRange(min=1),
    default=None,
    help="The naive baseline stops this long after its first event.  [default: 20; --quick 5]",
)
@click.option(
    "--memory-customers",
    type=click.IntRange(min=0),
    default=None,
    help="Customers loaded to measure Redis bytes per customer (0 skips).  [default: 1000000]",
)
@click.option(
    "--latency-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds of fixed-rate offering for latency (0 skips).  [default: 10]",
)
@click.option(
    "--latency-rate",
    type=click.FloatRange(min=1),
    default=None,
    help="Offered events/s for latency (default: half the measured throughput).",
)
@click.option(
    "--latency-sweep",
    callback=_parse_fractions,
    default=None,
    metavar="FRACTIONS",
    help="Measure latency again at these fractions of the measured throughput, comma-separated, each for "
    "--latency-seconds ('none' skips).  [default: 0.1,0.2,0.3,0.4; --quick none]",
)
@click.option(
    "--train-events",
    type=click.IntRange(min=0),
    default=None,
    help="Also time training on about this many transactions (0 skips).  [default: 1000000; --quick 0]",
)
@click.option(
    "--partitions", type=click.IntRange(min=1), default=4, show_default=True, help="Partitions of the input topics."
)
@click.option(
    "--two-workers/--no-two-workers",
    default=None,
    help="Also measure two workers in one group, and parity after one is killed mid-stream and another joins.",
)
@click.option("--profile", is_flag=True, help="Profile one extra worker run with py-spy and summarise it.")
@click.option("--no-micro", is_flag=True, help="Skip the micro-benchmarks.")
@click.option(
    "--use-running", is_flag=True, help="Use the SEGSTREAM_ Kafka and Redis instead of a fresh embedded stack."
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Score with this bundle (needs its segmentation artifact) instead of training one.",
)
@click.option("--no-uvloop", is_flag=True, help="Run every faust process on the default asyncio loop.")
@click.option(
    "--ceiling-mode",
    type=click.Choice(["worker", "take", "each"]),
    default="worker",
    show_default=True,
    help="worker: consume exactly like the worker (manual acks, batches formed while one is processed); "
    "take: faust's take_events; each: plain `async for`.",
)
@click.option(
    "--fetch-max-wait-ms",
    type=click.IntRange(min=0),
    default=None,
    help="What-if: faust consumers (worker included) fetch with this wait instead of faust's fixed 1500 ms.",
)
@click.option(
    "--redis-fsync",
    type=click.Choice(["always", "everysec"]),
    default=None,
    help="Embedded stack only: Redis appendfsync for the run (default: the stack's own, always; with "
    "--redis-cluster the nodes' own, everysec; set on every node).",
)
@click.option(
    "--redis-cluster",
    is_flag=True,
    help="Run on a local Redis Cluster (3 masters, 1 replica each) instead of the single embedded Redis. "
    "Redis CPU then sums every node; memory and AOF bytes sum the masters.",
)
@click.option("--keep", is_flag=True, help="Keep the work directory (process logs, profile).")
def bench(quick: bool, json_file: Path | None, **options: Any) -> None:
    """Benchmark the streaming worker end to end against the bare-faust ceiling and the naive baseline.

    Runs on a fresh embedded broker and Redis (or --use-running), pre-loads generated events, and measures
    in one run: the bare-faust ceiling, the real worker (`segstream worker`: throughput, latency at half
    its throughput, RSS), the naive worker, optionally two workers; then micro-benchmarks and Redis
    memory per customer. Prints a table; --json writes every figure. Ratios within one run are what count.
    """
    from rich.console import Console

    from segstream.bench import report
    from segstream.bench.harness import BenchConfig, run_bench

    options["latency_s"] = options.pop("latency_seconds")
    options["micro"] = not options.pop("no_micro")
    options["uvloop"] = not options.pop("no_uvloop")
    given = {k: v for k, v in options.items() if v is not None}
    config = BenchConfig.quick(**given) if quick else BenchConfig(**given)
    console = Console(stderr=True)
    result = run_bench(config, say=lambda msg: console.print(f"[dim]bench:[/] {msg}"))
    report.print_table(result)
    if json_file is not None:
        report.write_json(result, json_file)
        click.echo(f"wrote {json_file}")


@click.command("bench-training")
@click.option("--rows", type=click.IntRange(1000), default=10_000_000, show_default=True,
              help="Rows of the synthetic DuckDB orders table.")
@click.option("--customers", type=click.IntRange(10), default=400_000, show_default=True,
              help="Customers the rows are spread over (skewed: a few buy very often).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also run the in-memory path's read, clean and features on the same table, and compare.")
@click.option("--runs", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Pushdown trainings; the median is reported (machines are noisy).")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the table and bundle go (default: ~/.cache/segstream/bench-training).")
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write every figure as JSON here.")
def bench_training(rows: int, customers: int, baseline: bool, runs: int, work_dir: Path | None,
                   json_file: Path | None) -> None:
    """Train with --pushdown from a large DuckDB table: wall time, peak RSS, and features against the
    in-memory path on the same rows (targets: 10M rows in under 2 minutes and 4 GB)."""
    import json
    import shutil
    import sys

    from segstream.bench.training_scale import default_work_dir, run_training_scale

    script = shutil.which("segstream") or str(Path(sys.executable).with_name("segstream"))
    result = run_training_scale(rows, customers, work_dir or default_work_dir(), baseline=baseline, runs=runs,
                                segstream=script)
    click.echo(result.render())
    if result.pushdown.returncode != 0:
        click.echo(result.pushdown.output_tail, err=True)
    if json_file is not None:
        json_file.write_text(json.dumps(result.to_dict(), indent=2))
        click.echo(f"wrote {json_file}")


@click.command("bench-store")
@click.option("--events", type=click.IntRange(1000), default=200_000, show_default=True,
              help="Events of the bench workload driven through the store.")
@click.option("--customers", type=click.IntRange(10), default=20_000, show_default=True,
              help="Customers the events are spread over.")
@click.option("--batch", type=click.IntRange(1), default=500, show_default=True, help="Events per apply.")
@click.option("--runs", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Runs, each on a fresh redis-server; the median is reported.")
@click.option("--fold", type=click.Choice(["redis", "worker"]), default="redis", show_default=True,
              help="Fold each batch in Redis (Lua) or in this process (SEGSTREAM_REDIS_FOLD).")
@click.option("--fold-cache", type=click.IntRange(0), default=50_000, show_default=True,
              help="With --fold worker: customers whose parsed fold the store keeps (0: read every customer whole).")
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write every figure as JSON here.")
def bench_store(events: int, customers: int, batch: int, runs: int, fold: str, fold_cache: int,
                json_file: Path | None) -> None:
    """The state store alone (apply + finalize, no faust, no broker): Redis CPU, client CPU and AOF bytes per
    event, the figures the full bench cannot separate from everything else on the machine."""
    import json

    from segstream.bench.store_only import run_store_bench

    result = run_store_bench(events, customers, batch=batch, runs=runs, fold=fold, fold_cache=fold_cache)
    click.echo(result.render())
    if json_file is not None:
        json_file.write_text(json.dumps(result.to_dict(), indent=2))
        click.echo(f"wrote {json_file}")


COMMANDS = [bench, bench_training, bench_store]
