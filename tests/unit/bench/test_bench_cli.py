"""``segstream bench``: help, and how the options become a BenchConfig (the run itself: integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.bench import harness
from segstream.bench.harness import BenchConfig
from segstream.cli.main import cli


def test_help():
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0
    for option in ("--events", "--customers", "--json", "--quick", "--profile", "--use-running"):
        assert option in result.output


@pytest.fixture
def captured(monkeypatch):
    seen: list[BenchConfig] = []

    def fake_run(config, say):
        seen.append(config)
        say("pretend")
        return {"throughput_eps": 1.0}

    monkeypatch.setattr(harness, "run_bench", fake_run)
    monkeypatch.setattr("segstream.bench.report.print_table", lambda report: None)
    return seen


def test_defaults_are_the_full_run(captured):
    result = CliRunner().invoke(cli, ["bench"])
    assert result.exit_code == 0, result.output
    assert captured == [BenchConfig()]


def test_quick_with_overrides_and_json(captured, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "--quick", "--events", "3000", "--no-micro", "--no-uvloop", "--latency-seconds", "0",
            "--baseline-seconds", "2", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (config,) = captured
    assert config == BenchConfig.quick(events=3000, micro=False, uvloop=False, latency_s=0.0, baseline_budget_s=2.0)
    assert config.customers == BenchConfig.quick().customers and config.two_workers is False
    assert json.loads(Path(out).read_text()) == {"throughput_eps": 1.0}


@pytest.mark.parametrize(
    ("given", "sweep"),
    [(["--latency-sweep", "0.3,0.1"], (0.3, 0.1)), (["--latency-sweep", "none"], ()), ([], (0.1, 0.2, 0.3, 0.4))],
)
def test_the_latency_sweep_takes_fractions_of_throughput(captured, given, sweep):
    result = CliRunner().invoke(cli, ["bench", *given])
    assert result.exit_code == 0, result.output
    assert captured[0].latency_sweep == sweep


def test_quick_runs_no_sweep_unless_asked(captured):
    assert CliRunner().invoke(cli, ["bench", "--quick"]).exit_code == 0
    assert CliRunner().invoke(cli, ["bench", "--quick", "--latency-sweep", "0.2"]).exit_code == 0
    assert [c.latency_sweep for c in captured] == [(), (0.2,)]


@pytest.mark.parametrize(
    ("value", "says"),
    [("0.1,abc", "'abc' is not a number"), ("0.1,0", "0.0 is not a fraction"), ("5", "5.0 is not a fraction"),
     ("nan", "nan is not a fraction")],
)  # fmt: skip
def test_a_bad_sweep_is_a_clear_error_before_anything_runs(captured, value, says):
    result = CliRunner().invoke(cli, ["bench", "--latency-sweep", value])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert captured == []


def test_redis_cluster_is_a_flag_of_the_config(captured):
    assert CliRunner().invoke(cli, ["bench", "--quick", "--redis-cluster"]).exit_code == 0
    assert captured[0].redis_cluster is True and BenchConfig().redis_cluster is False
    assert "--redis-cluster" in CliRunner().invoke(cli, ["bench", "--help"]).output


def test_a_cluster_with_a_running_stack_is_a_clear_error(tmp_path):
    from segstream.bench.errors import BenchError

    with pytest.raises(BenchError, match="cannot be combined with --use-running"):
        with harness._services(BenchConfig(use_running=True, redis_cluster=True), tmp_path):
            pass


def test_naive_events_default():
    assert BenchConfig(events=100_000).naive_events == 10_000
    assert BenchConfig(events=2000).naive_events == 1000
    assert BenchConfig(baseline_events=123).naive_events == 123
