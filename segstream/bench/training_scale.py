"""Training from a large DuckDB table: ``segstream bench-training`` (default 10M rows, 400k customers).

The target (issue "SQL sources"): ``train --sql ... --pushdown`` on a 10M-row DuckDB table in under two
minutes with peak RSS under 4 GB, its features equal to the in-memory path's on the same rows.

What runs, each in a fresh child process so its peak RSS is its own (``ru_maxrss`` of the child):

1. **pushdown**: ``segstream train --sql "SELECT * FROM orders" --db <file> --pushdown`` (the whole
   training, bundle written);
2. **in-memory baseline** (``--baseline``, on by default): the naive path on the same query, read into
   pandas, cleaned and aggregated (``read_query`` -> ``clean_transactions`` -> ``batch_features``): only
   the features, since that is what the pushdown replaces; its features are compared with the bundle's
   customer table, column by column, for exact equality.

The table is synthetic, built inside DuckDB (deterministic: row i's values are hashes of i): customers
with skewed activity (a few buy very often), start dates spread over the first 600 of 730 days, log-normal
amounts in cents and 3% returns, plus a few hundred rows spoiled on purpose (blank ids, text amounts,
duplicates) so the Python side of the cleaning runs too.
"""

# ruff: noqa: S608 - the statements are built from integers this module chooses, nothing from outside
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

_DAY_US = 86_400_000_000
_START_US = 1_640_995_200_000_000  # 2022-01-01T00:00:00Z
_SPOILED = 300


def build_table(path: Path, rows: int, customers: int) -> float:
    """Write the synthetic ``orders`` table to ``path``; returns seconds taken."""
    started = time.perf_counter()
    path.unlink(missing_ok=True)
    u = "(hash(i, {salt}) % 1000000007) / 1000000007.0"  # a uniform in [0, 1) from the row number
    with duckdb.connect(str(path)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"""
            CREATE TABLE orders AS
            WITH r AS (
                SELECT i,
                       -- skewed: customer c is drawn with density ~ c^(-1/3), so low ids buy more often
                       CAST(floor({customers} * pow({u.format(salt=1)}, 1.5)) AS BIGINT) AS c,
                       {u.format(salt=2)} AS u_time, {u.format(salt=3)} AS u_amount, {u.format(salt=4)} AS u_return,
                       {u.format(salt=6)} AS u_angle
                FROM range({rows}) AS t(i)
            )
            SELECT 'e' || i AS event_id,
                   'C' || lpad(CAST(c AS VARCHAR), 7, '0') AS customer_id,
                   CAST(make_timestamp(CAST({_START_US}
                       + ((hash(c, 9) % 600) + u_time * (730 - (hash(c, 9) % 600))) * {_DAY_US} AS BIGINT))
                       AS TIMESTAMPTZ) AS timestamp,
                   round((CASE WHEN u_return < 0.03 THEN -1 ELSE 1 END)
                         * exp(3.2 + 0.9 * sqrt(-2 * ln(greatest(u_amount, 1e-12))) * cos(6.283185 * u_angle)), 2)
                       AS amount,
                   CAST(1 + hash(i, 5) % 3 AS INTEGER) AS quantity
            FROM r
        """)  # fmt: skip
        # A few spoiled rows: duplicates of real events, blank customers, NaN amounts.
        con.execute(f"""
            INSERT INTO orders
            SELECT event_id, CASE WHEN i % 3 = 0 THEN NULL ELSE customer_id END, timestamp,
                   CASE WHEN i % 3 = 1 THEN 'NaN' ELSE CAST(amount AS VARCHAR) END, quantity
            FROM (SELECT row_number() OVER () AS i, * FROM orders LIMIT {_SPOILED})
        """)  # fmt: skip
    return time.perf_counter() - started


@dataclass
class Run:
    """One measured child process."""

    name: str
    seconds: float
    peak_rss_mb: float
    returncode: int
    output_tail: str = ""


def _measured(name: str, argv: list[str]) -> Run:
    """Run ``argv`` under a tiny wrapper process that reports its child's peak RSS."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "s = time.perf_counter() - t\n"
        "print(repr((p.returncode, s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "(p.stdout + p.stderr)[-3000:])))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, check=True)
    code, seconds, rss_kb, tail = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr
    return Run(name, float(seconds), rss_kb / 1024.0, int(code), tail)


_BASELINE = """
import sys, pandas as pd
from segstream.models.contract import DEFAULT_LIMITS
from segstream.models.features import batch_features
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import canonical
from segstream.trainer.sql_source import SqlSource, read_query
source = SqlSource("SELECT * FROM orders", "duckdb:///" + sys.argv[1])
events, _ = clean_transactions(canonical(read_query(source), source.label()), str(source), limits=DEFAULT_LIMITS)
batch_features(events).to_parquet(sys.argv[2])
"""


@dataclass
class TrainingScaleResult:
    rows: int
    customers: int
    build_s: float
    pushdown: Run
    baseline: Run | None = None
    runs_s: list[float] = field(default_factory=list)
    stages_s: dict[str, float] = field(default_factory=dict)
    features_equal: bool | None = None
    mismatch: str = ""
    targets: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"training from a DuckDB table: {self.rows:,} rows, {self.customers:,} customers "
                 f"(table built in {self.build_s:.0f}s)"]  # fmt: skip
        for run in (self.pushdown, self.baseline):
            if run is not None:
                lines.append(f"  {run.name:<34} {run.seconds:>8.1f} s   peak RSS {run.peak_rss_mb:>7,.0f} MB"
                             + ("" if run.returncode == 0 else f"   FAILED (exit {run.returncode})"))  # fmt: skip
        if len(self.runs_s) > 1:
            lines.append("  pushdown runs: " + ", ".join(f"{s:.1f}s" for s in self.runs_s))
        if self.stages_s:
            lines.append("  pushdown stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.stages_s.items()))
        if self.features_equal is not None:
            lines.append(f"  features equal to the in-memory path: {'yes' if self.features_equal else 'NO'}"
                         + (f" ({self.mismatch})" if self.mismatch else ""))  # fmt: skip
        for name, ok in self.targets.items():
            lines.append(f"  target {name:<40} {'holds' if ok else 'FAILS'}")
        return "\n".join(lines)


def run_training_scale(rows: int, customers: int, work: Path, *, baseline: bool = True, runs: int = 1,
                       segstream: str = "segstream") -> TrainingScaleResult:  # fmt: skip
    """Build the table under ``work``, train from it with ``--pushdown`` ``runs`` times (the median run is
    reported), and (``baseline``) compare with the in-memory path. ``segstream``: the command to start."""
    import pandas as pd

    work.mkdir(parents=True, exist_ok=True)
    db = work / "orders.duckdb"
    build_s = build_table(db, rows, customers)
    bundle = work / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    command = [segstream, "train", "--sql", "SELECT * FROM orders", "--db", str(db), "--pushdown", "--out", str(bundle)]
    attempts = []
    for attempt in range(max(1, runs)):
        if attempt:
            shutil.rmtree(bundle)
        attempts.append(_measured("train --pushdown (whole training)", command))
    ordered = sorted(attempts, key=lambda r: r.seconds)
    pushdown = ordered[len(ordered) // 2]  # the median run (its peak RSS is that run's)
    if len(attempts) > 1:
        pushdown.name = f"train --pushdown, median of {len(attempts)}"
    result = TrainingScaleResult(rows, customers, build_s, pushdown, runs_s=[r.seconds for r in attempts])
    if pushdown.returncode == 0:
        manifest = json.loads((bundle / "manifest.json").read_text())
        result.stages_s = {k: float(v) for k, v in manifest["metrics"].get("timings_s", {}).items()}
        result.customers = int(manifest["info"]["customers"])
    if baseline:
        features_file = work / "baseline_features.parquet"
        result.baseline = _measured("in-memory read + clean + features", [sys.executable, "-c", _BASELINE, str(db),
                                                                          str(features_file)])  # fmt: skip
        if pushdown.returncode == 0 and result.baseline.returncode == 0:
            expected = pd.read_parquet(features_file)
            got = pd.read_parquet(bundle / "customers.parquet").set_index("customer_id")[list(expected.columns)]
            got.index.name = expected.index.name
            try:
                pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_exact=True)
                result.features_equal = True
            except AssertionError as exc:
                result.features_equal, result.mismatch = False, " ".join(str(exc).split())[:300]
    result.targets = {
        "whole training under 120 s": pushdown.returncode == 0 and pushdown.seconds < 120,
        "peak RSS under 4 GB": pushdown.peak_rss_mb < 4096,
    }
    if result.features_equal is not None:
        result.targets["features equal to the in-memory path"] = result.features_equal
    return result


def default_work_dir() -> Path:
    return Path(os.environ.get("SEGSTREAM_BENCH_DIR", Path.home() / ".cache" / "segstream" / "bench-training"))
