"""Child-process helpers: counting windows, /proc readings, metrics parsing, start/stop of a real child."""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from segstream.bench.errors import BenchError
from segstream.bench.procs import (
    Child,
    CountWindow,
    batch_profile,
    cpu_seconds,
    free_port,
    main_thread_sched,
    read_metrics,
    rss_mb,
    sched_percent,
    wait_result_file,
    watch_count,
)


def test_window_rate_leaves_out_what_was_counted_before_the_clock_started():
    assert CountWindow(10.0, 500, 12.0, 4500, [4500]).eps == pytest.approx(2000)
    assert CountWindow(10.0, 500, 10.0, 500, [500]).eps == 0.0


def test_watch_count_sums_sources_until_the_target():
    counts = iter([None, 0, 100, 300, 600, 1000])
    other = iter([0, 0, 0, 0, 0, 0])
    window = watch_count([lambda: next(counts), lambda: next(other)], 1000, timeout=5, interval=0)
    assert (window.c_first, window.c_end) == (100, 1000)
    assert window.per_source == [1000, 0]


def test_watch_count_times_out_with_a_clear_error():
    with pytest.raises(BenchError, match="reached 5 of 10"):
        watch_count([lambda: 5], 10, timeout=0.05, interval=0.01)


def test_proc_readings_of_this_process():
    assert cpu_seconds(os.getpid()) > 0
    mem = rss_mb(os.getpid())
    assert 0 < mem["rss_mb"] <= mem["peak_rss_mb"]
    assert rss_mb(2**22 + 12345) == {} and cpu_seconds(2**22 + 12345) == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="needs Linux schedstat")
def test_main_thread_scheduling_counts_time_on_a_cpu_and_none_for_a_gone_process():
    import time

    before, started = main_thread_sched(os.getpid()), time.perf_counter()
    while time.perf_counter() - started < 0.2:  # busy: this thread wants a CPU the whole time
        pass
    after = main_thread_sched(os.getpid())
    shares = sched_percent(before, after, time.perf_counter() - started)
    assert after[0] > before[0] and after[1] >= before[1]
    # On a CPU or waiting for one covers the busy interval (a little slack for the reads themselves).
    assert 90 <= shares["on_cpu"] + shares["runqueue"] <= 110
    assert main_thread_sched(2**22 + 12345) == (0.0, 0.0)
    assert sched_percent(before, (0.0, 0.0), 1.0) == {} and sched_percent(before, after, 0.0) == {}


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        body = (b"# HELP segstream_events_processed_total x\n# TYPE segstream_events_processed_total counter\n"
                b"segstream_events_processed_total 1234\nsegstream_consumer_lag{partition=\"0\"} 5\n"
                b"segstream_batch_seconds_total 1.5\n")  # fmt: skip
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_read_metrics_keeps_unlabelled_samples():
    server = HTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = read_metrics(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert out == {"segstream_events_processed_total": 1234.0, "segstream_batch_seconds_total": 1.5}


def test_batch_profile_is_the_difference_of_two_reads_per_batch():
    before = {"segstream_batches_total": 10.0, "segstream_events_processed_total": 1000.0,
              "segstream_batch_seconds_total": 1.0, 'segstream_stage_seconds_total{stage="apply"}': 0.5,
              'segstream_gc_collections_total{generation="2"}': 3.0,
              'segstream_gc_seconds_total{generation="2"}': 0.3}  # fmt: skip
    after = {"segstream_batches_total": 30.0, "segstream_events_processed_total": 5000.0,
             "segstream_batch_seconds_total": 2.0, 'segstream_stage_seconds_total{stage="apply"}': 0.9,
             'segstream_gc_collections_total{generation="2"}': 5.0,
             'segstream_gc_seconds_total{generation="2"}': 0.32}  # fmt: skip
    out = batch_profile(before, after)
    assert out["batches"] == 20 and out["mean_events_per_batch"] == 200
    assert out["ms_per_batch"]["apply"] == pytest.approx(20.0) and out["ms_per_batch_total"] == pytest.approx(50.0)
    assert out["gc_collections"] == {"2": 2.0} and out["gc_ms"]["2"] == pytest.approx(20.0)


def test_read_metrics_of_nothing_is_none():
    assert read_metrics(free_port(), timeout=0.5) is None


def test_child_result_file_and_log_tail(tmp_path):
    result = tmp_path / "r.json"
    code = f"import json, pathlib; print('hello'); pathlib.Path({str(result)!r}).write_text(json.dumps({{'eps': 5}}))"
    child = Child.start("writer", [sys.executable, "-c", code], {}, tmp_path / "logs")
    assert wait_result_file(child, result, timeout=30) == {"eps": 5}
    assert "hello" in child.log_tail()


def test_a_dead_child_is_reported_with_its_log(tmp_path):
    child = Child.start("dies", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], {}, tmp_path)
    child.proc.wait(30)
    with pytest.raises(BenchError, match="dies exited with code 3") as info:
        wait_result_file(child, tmp_path / "never.json", timeout=5)
    assert "boom" in str(info.value)


def test_stop_terminates_a_running_child(tmp_path):
    child = Child.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path)
    assert child.alive()
    assert child.stop(timeout=10) is not None
    assert not child.alive()


def test_cpu_per_event_of_each_process_and_their_sum():
    from segstream.bench.procs import cpu_us_per_event

    before = {"worker": 1.0, "redis": 2.0, "kafka": 0.5}
    after = {"worker": 1.4, "redis": 2.3, "kafka": 0.6}
    out = cpu_us_per_event(before, after, 10_000)
    assert out == pytest.approx({"worker": 40.0, "redis": 30.0, "kafka": 10.0, "sum": 80.0})
    assert list(out)[-1] == "sum"
    assert cpu_us_per_event(before, after, 0) == {}  # nothing processed: no figure
    assert cpu_us_per_event({"worker": 1.0, "redis": 1.0}, {"worker": 2.0}, 1e6) == {"worker": 1.0, "sum": 1.0}


def test_cpu_of_several_processes_is_summed():
    from segstream.bench.procs import cpu_seconds_of

    me = os.getpid()
    assert cpu_seconds_of([me, 2**22 + 12345]) == pytest.approx(cpu_seconds(me), abs=0.05)
    assert cpu_seconds_of([]) == 0.0


def test_the_sampler_gives_cpu_per_event_between_the_window_s_first_and_last_poll():
    from segstream.bench.phases import Sampler

    sampler = Sampler.__new__(Sampler)  # no worker: only the recorded samples matter here
    sampler.samples = [(9.0, 0.0, {"worker": 0.0, "redis": 0.0}),  # before the window: left out
                       (10.0, 500.0, {"worker": 1.0, "redis": 0.5}),
                       (11.0, 2500.0, {"worker": 1.1, "redis": 0.6}),
                       (12.0, 4500.0, {"worker": 1.2, "redis": 0.7})]  # fmt: skip
    window = CountWindow(10.0, 500.0, 12.0, 4500.0, [4500.0])
    assert sampler.cpu_us_per_event(window) == pytest.approx({"worker": 50.0, "redis": 50.0, "sum": 100.0})
    assert sampler.cpu_us_per_event(CountWindow(20.0, 1.0, 21.0, 2.0, [2.0])) == {}
