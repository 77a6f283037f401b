"""A small ``segstream bench`` from the CLI on its own embedded stack: every stable key is there with a
sane type and the scoring equality check passed. No thresholds: numbers on a shared CI box mean little."""

from __future__ import annotations

import json
import math
import os

import pytest
from click.testing import CliRunner

from segstream.bench.report import LATENCY_KEYS, STABLE_KEYS
from segstream.cli.main import cli


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_reports_every_stable_key(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--events", "6000", "--customers", "800", "--baseline-events", "400",
            "--latency-seconds", "2", "--latency-sweep", "0.1", "--memory-customers", "3000",
            "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "worker / ceiling" in result.output
    report = json.loads(out.read_text())
    assert set(STABLE_KEYS) <= set(report)
    for key in ("throughput_eps", "baseline_eps", "speedup", "worker_rss_mb", "redis_bytes_per_customer",
                "faust_ceiling_eps", "ceiling_ratio"):  # fmt: skip
        assert _positive(report[key]), (key, report[key])
    assert report["two_workers_eps"] is None  # --quick leaves the second worker out
    assert all(_positive(report["latency_ms"][k]) for k in LATENCY_KEYS), report["latency_ms"]
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert isinstance(report["machine"]["cpu_count"], int) and report["machine"]["python"]
    assert report["versions"]["faust-streaming"] and report["settings"]["faust_app"]["broker_max_poll_records"]
    scoring = report["micro"]["scoring"]
    assert scoring["labels_equal"] is True and scoring["rows_checked"] > 0
    assert report["micro"]["redis_state"] and report["micro"]["json"]["parse_event_per_s"] > 0
    details = report["details"]
    assert details["worker"]["metrics"]["segstream_dead_letters_total"] == 0
    assert details["worker"]["latency"]["received"] == details["worker"]["latency"]["sent"]
    (swept,) = details["worker"]["latency_sweep"]  # a second latency point on the same worker, new events
    assert swept["fraction_of_throughput"] == 0.1 and swept["received"] == swept["sent"] > 0
    assert swept["offered_rate_eps"] == pytest.approx(0.1 * report["throughput_eps"])
    assert details["worker"]["metrics"]["segstream_duplicates_total"] == 0
    if os.path.exists("/proc/self/schedstat"):  # the main thread's scheduling, read from Linux's schedstat
        for where in (details["worker"], *details["ceiling_runs"]):
            shares = where["main_thread_percent"]
            assert 0 < shares["on_cpu"] <= 110 and 0 <= shares["runqueue"] <= 110, shares
    for phase in (details["worker"], details["worker"]["latency"]):  # what Redis spent per event, per phase
        cost = phase["redis_cost"]
        assert cost["cpu_us_per_event"] > 0 and cost["commands"]["evalsha"]["calls_per_event"] > 0
        assert isinstance(cost["forks"], int) and cost["forks"] >= 0
    # Each latency sample split at the generator's handover and the scored record's Kafka timestamp.
    stages = details["worker"]["latency"]["stages_ms"]
    assert all(math.isfinite(stages[name]["mean"]) for name in ("generator", "to_scored", "to_read")), stages
    assert stages["to_scored"]["mean"] > 0 and stages["generator"]["p99"] <= 1000 * 0.020 + 50
