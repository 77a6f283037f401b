"""The bench report: stable keys with sane types whatever phases ran, ratios, table rows, JSON file."""

from __future__ import annotations

import json

import pytest

from segstream.bench import report

LATENCY = {"offered_rate_eps": 3000.0, "latency_ms": {"p50": 20.0, "p95": 40.0, "p99": 60.0, "max": 90.0}}
FULL = {
    "worker": {"eps": 6000.0, "rss": {"rss_mb": 200.0, "peak_rss_mb": 250.0}, "latency": LATENCY},
    "baseline": {"eps": 500.0},
    "ceiling": {"eps": 8000.0},
    "two_workers": {"eps": 9000.0, "per_worker_events": [5000.0, 4000.0]},
    "memory": {"bytes_per_customer": 800.0, "customers": 1_000_000},
    "training": {"rows": 1_000_000, "generate_seconds": 3.0, "clean_seconds": 2.0, "train_seconds": 40.0},
    "micro": {"scoring": {"labels_equal": True, "segment_mismatches": 0,
                          "batches": [{"batch": 500, "speedup": 12.0}]}},
    "settings_used": {"partitions": 4},
}  # fmt: skip


def test_full_report_has_every_stable_key_and_the_ratios():
    out = report.build(FULL)
    assert set(report.STABLE_KEYS) <= set(out)
    assert out["throughput_eps"] == 6000.0
    assert out["speedup"] == pytest.approx(12.0)
    assert out["ceiling_ratio"] == pytest.approx(0.75)
    assert out["worker_rss_mb"] == 250.0  # the peak, not the last reading
    assert out["latency_ms"]["p99"] == 60.0
    assert out["two_workers_eps"] == 9000.0
    assert out["train_seconds"] == 40.0
    assert out["settings"] == {"partitions": 4}
    assert isinstance(out["machine"]["cpu_count"], int)
    assert "faust-streaming" in out["versions"]
    json.dumps(out)  # serialisable as it is


def test_missing_phases_give_nulls_not_errors():
    out = report.build({})
    assert set(report.STABLE_KEYS) <= set(out)
    for key in ("throughput_eps", "baseline_eps", "speedup", "faust_ceiling_eps", "ceiling_ratio",
                "worker_rss_mb", "redis_bytes_per_customer", "two_workers_eps", "train_seconds"):  # fmt: skip
        assert out[key] is None, key
    assert out["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}
    assert all(len(row) == 3 for row in report.rows(out))


def test_a_zero_baseline_gives_no_ratio():
    assert report.build({"worker": {"eps": 10.0}, "baseline": {"eps": 0.0}})["speedup"] is None


def test_rows_show_figures_targets_and_the_scoring_check():
    rows = {name: (value, target) for name, value, target in report.rows(report.build(FULL))}
    assert rows["worker throughput"][0] == "6,000 ev/s"
    assert rows["worker / ceiling"] == ("0.75", ">= 0.75")
    assert rows["speedup vs naive"][0] == "12.0x"
    assert rows["latency p50 / p95 / p99"][0] == "20.0 / 40.0 / 60.0 ms"
    assert rows["scoring @500 numpy/sklearn"] == ("12.0x", "labels equal")
    assert "5,000" in rows["two workers combined"][1]
    assert rows["training time"][0] == "40.0 s" and "1,000,000 rows" in rows["training time"][1]


def test_write_json_round_trips(tmp_path):
    path = tmp_path / "bench.json"
    report.write_json(report.build(FULL), path)
    assert json.loads(path.read_text())["faust_ceiling_eps"] == 8000.0


def test_print_table_renders(capsys):
    report.print_table(report.build(FULL))
    assert "worker / ceiling" in capsys.readouterr().out


def test_the_ceiling_is_the_mean_of_the_runs_before_and_after_the_worker():
    results = {**FULL, "ceiling_runs": [{"eps": 7000.0}, {"eps": 9000.0}]}
    out = report.build(results)
    assert out["faust_ceiling_eps"] == 8000.0
    assert out["ceiling_ratio"] == pytest.approx(0.75)
    rows = {name: (value, note) for name, value, note in report.rows(out)}
    assert rows["bare-faust ceiling"] == ("8,000 ev/s", "mean of 7,000 (before) and 9,000 (after)")
    assert rows["two workers combined"][1].startswith("1.50x one worker")


def test_the_latency_rate_note_says_whether_the_rate_was_half_throughput_or_fixed():
    def note(results):
        return {name: n for name, _, n in report.rows(report.build(results))}["latency offered rate"]

    assert note(FULL).startswith("half throughput")
    assert note({**FULL, "config": {"latency_rate": 2000.0}}).startswith("fixed (--latency-rate)")


def test_the_notes_say_how_the_cores_were_shared_in_each_phase():
    latency = {**LATENCY, "cpu_percent": {"worker": 71.6, "kafka": 38.2, "redis": 33.0},
               "load_generator_cpu_percent": 16.4}  # fmt: skip
    worker = {**FULL["worker"], "cpu_percent": {"worker": 95.0, "kafka": 12.4, "redis": 56.5}, "latency": latency}
    notes = {name: n for name, _, n in report.rows(report.build({**FULL, "worker": worker}))}
    assert notes["worker throughput"] == "CPU: worker 95%, kafka 12%, redis 56%"
    assert notes["latency offered rate"] == (
        "half throughput; CPU: worker 72%, kafka 38%, redis 33%, load generator 16%"
    )
    # The main thread's scheduling: the worker's, and each ceiling run's.
    sched = {"on_cpu": 88.6, "runqueue": 7.9}
    ceilings = [{"eps": 7000.0, "main_thread_percent": {"on_cpu": 95.2, "runqueue": 0.4}}, {"eps": 9000.0}]
    notes = {name: n for name, _, n in report.rows(report.build({
        **FULL, "worker": {**worker, "main_thread_percent": sched}, "ceiling_runs": ceilings}))}  # fmt: skip
    assert notes["worker throughput"].endswith("; main thread on CPU 89%, waiting for one 8%")
    assert notes["bare-faust ceiling"].endswith("(after); main thread on CPU 95%, waiting for one 0%")
    # Runs that did not sample CPU (or JSON from before it was sampled) still render.
    plain = {name: n for name, _, n in report.rows(report.build(FULL))}
    assert plain["worker throughput"] == "" and plain["latency offered rate"] == "half throughput"


def test_a_row_says_what_redis_spent_per_event_in_each_phase():
    latency = {**LATENCY, "redis_cost": {"cpu_us_per_event": 81.4, "commands": {"evalsha": {"us_per_event": 70.2}}}}
    worker = {**FULL["worker"], "latency": latency,
              "redis_cost": {"cpu_us_per_event": 44.6, "commands": {"evalsha": {"us_per_event": 38.0},
                                                                    "get": {"us_per_event": 0.4}}}}  # fmt: skip
    rows = {name: (value, note) for name, value, note in report.rows(report.build({**FULL, "worker": worker}))}
    assert rows["Redis CPU per event"] == ("45 / 81 us", "full speed / latency phase; in Lua scripts 38 / 70 us")
    # Runs without the figures (INFO refused, or JSON from before they were taken) still render.
    plain = {name: value for name, value, _ in report.rows(report.build(FULL))}
    assert plain["Redis CPU per event"] == "- / - us"


def _sweep_point(fraction: float, rate: float, p99: float) -> dict:
    return {"fraction_of_throughput": fraction, "offered_rate_eps": rate,
            "latency_ms": {"p50": p99 / 2, "p95": p99 * 0.8, "p99": p99, "max": p99 * 1.5}}  # fmt: skip


def test_the_sweep_row_gives_p99_per_rate_and_the_highest_rate_within_the_target():
    sweep = [_sweep_point(0.1, 1000, 79.1), _sweep_point(0.2, 2000, 90.4), _sweep_point(0.3, 3000, 98.2),
             _sweep_point(0.4, 4000, 178.8)]  # fmt: skip
    worker = {**FULL["worker"], "latency_sweep": sweep}
    rows = {name: (value, note) for name, value, note in report.rows(report.build({**FULL, "worker": worker}))}
    assert rows["p99 by offered rate (ev/s)"] == (
        "1,000: 79 · 2,000: 90 · 3,000: 98 · 4,000: 179 ms",
        "highest with p99 <= 100 ms: 3,000 ev/s (0.30 of throughput)",
    )
    worker["latency_sweep"] = [_sweep_point(0.1, 1000, 120.0)]
    rows = {name: note for name, _, note in report.rows(report.build({**FULL, "worker": worker}))}
    assert rows["p99 by offered rate (ev/s)"] == "no swept rate met p99 <= 100 ms"
    # Without a sweep (or with points that got no samples) there is no row.
    worker["latency_sweep"] = [{"fraction_of_throughput": 0.1, "offered_rate_eps": 1000, "latency_ms": {"p99": None}}]
    assert "p99 by offered rate (ev/s)" not in {n for n, _, _ in report.rows(report.build({**FULL, "worker": worker}))}
    assert "p99 by offered rate (ev/s)" not in {n for n, _, _ in report.rows(report.build(FULL))}


def test_the_latency_rows_split_the_time_by_stage_and_say_when_redis_forked():
    stage = {"p50": 9.0, "p95": 18.0, "p99": 19.6, "max": 20.0, "mean": 10.2}
    latency = {**LATENCY, "redis_cost": {"cpu_us_per_event": 70.0, "forks": 1, "commands": {}},
               "stages_ms": {"generator": stage, "to_scored": {**stage, "mean": 34.5, "p99": 81.2},
                             "to_read": {**stage, "mean": 11.0, "p99": 24.9}}}  # fmt: skip
    rows = {name: (value, note) for name, value, note in
            report.rows(report.build({**FULL, "worker": {**FULL["worker"], "latency": latency}}))}  # fmt: skip
    assert rows["latency by stage"][0] == "tick 10 / 20 · to scored 34 / 81 · read 11 / 25 ms"
    forked = "p99 <= 100 ms; Redis forked 1x meanwhile (an AOF rewrite or a snapshot)"
    assert rows["latency p50 / p95 / p99"][1] == forked
    # Without the split or any fork (older JSON, another Redis): no stage row, the plain target.
    plain = {name: note for name, _, note in report.rows(report.build(FULL))}
    assert "latency by stage" not in plain and plain["latency p50 / p95 / p99"] == "p99 <= 100 ms"


def test_rows_give_cpu_per_event_of_each_process_in_both_phases():
    latency = {**LATENCY, "cpu_us_per_event": {"worker": 120.4, "kafka": 60.0, "redis": 70.2, "sum": 250.6}}
    worker = {**FULL["worker"], "latency": latency,
              "cpu_us_per_event": {"worker": 90.0, "kafka": 10.2, "redis": 45.0, "sum": 145.2}}  # fmt: skip
    rows = {name: (value, note) for name, value, note in report.rows(report.build({**FULL, "worker": worker}))}
    assert rows["CPU per event, full speed"] == ("145 us", "worker 90, kafka 10, redis 45 us (/proc CPU over "
                                                 "processed events)")  # fmt: skip
    assert rows["CPU per event, latency phase"][0] == "251 us"
    # Runs without the samples (older JSON, a skipped latency phase) have no such rows.
    names = {name for name, _, _ in report.rows(report.build(FULL))}
    assert not any(name.startswith("CPU per event") for name in names)


def test_on_a_cluster_the_rows_say_what_the_redis_figures_sum_over():
    cluster = {"kind": "cluster", "masters": 3, "replicas": 3, "nodes": []}
    worker = {**FULL["worker"], "cpu_us_per_event": {"worker": 90.0, "redis": 60.0, "sum": 150.0},
              "redis_cost": {"cpu_us_per_event": 61.0, "aof_bytes_per_event": 210.4, "commands": {}}}  # fmt: skip
    results = {**FULL, "worker": worker, "redis": cluster, "memory": {**FULL["memory"], "servers": 3},
               "settings_used": {"redis": {"appendfsync": "everysec"}}}  # fmt: skip
    rows = {name: (value, note) for name, value, note in report.rows(report.build(results))}
    summed = (
        "redis = CPU of all 6 cluster node processes (3 masters + 3 replicas); memory and AOF bytes sum the 3 masters"
    )
    assert rows["Redis"] == ("cluster, 3 masters + 3 replicas", f"appendfsync everysec; {summed}")
    assert rows["CPU per event, full speed"][1].endswith("; redis: all 6 cluster nodes (see Redis)")
    assert rows["Redis CPU per event"][1].endswith("; AOF 210 / - B")
    assert rows["Redis bytes/customer"][1] == "at 1,000,000 customers; used_memory of 3 masters summed"
    single = {name: (value, note) for name, value, note in report.rows(report.build(
        {**FULL, "redis": {"kind": "single", "masters": 1, "replicas": 0}}))}  # fmt: skip
    assert single["Redis"] == ("single server", "")
    worker_fold = {name: (value, note) for name, value, note in report.rows(report.build(
        {**FULL, "redis": {"kind": "single", "masters": 1, "replicas": 0},
         "settings_used": {"redis": {"appendfsync": "always", "fold": "worker"}}}))}  # fmt: skip
    assert worker_fold["Redis"] == ("single server", "fold in worker; appendfsync always")
