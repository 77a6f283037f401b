"""`segstream bench-store`: the store alone on a fresh redis-server, with and without the worker's fold cache."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli

pytestmark = pytest.mark.integration


def test_bench_store_reports_per_event_costs_and_the_cache_saves_whole_reads(tmp_path):
    out = {}
    for cache in (0, 50_000):
        path = tmp_path / f"store-{cache}.json"
        args = ["bench-store", "--events", "4000", "--customers", "400", "--runs", "1", "--fold", "worker",
                "--fold-cache", str(cache), "--json", str(path)]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "Redis CPU" in result.output and "AOF" in result.output
        out[cache] = json.loads(path.read_text())
    for report in out.values():
        median = report["median"]
        assert median["redis_us"] > 0 and median["client_us"] > 0 and median["aof_bytes"] > 0
        assert report["runs"][0]["calls"]["evalsha"] > 0
    # Without the cache every customer of a batch is read whole; with it, only those it has not folded lately.
    whole_without = out[0]["runs"][0]["calls"].get("hgetall", 0)
    whole_with = out[50_000]["runs"][0]["calls"].get("hgetall", 0)
    assert whole_without > 0.3 and whole_with < whole_without / 3


def test_bench_store_folding_in_redis_spends_the_fold_in_redis(tmp_path):
    path = tmp_path / "redis.json"
    result = CliRunner().invoke(cli, ["bench-store", "--events", "4000", "--customers", "400", "--runs", "1",
                                      "--json", str(path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["fold"] == "redis" and report["runs"][0]["calls"]["evalsha"] > 0
    # the Lua fold reads each customer inside its script: no HGETALL sent by the client for it
    assert report["runs"][0]["calls"].get("mget", 0) == 0
