"""Faults on the real worker and embedded stack: crashes, Redis restarts and outages, a paused broker, a
worker killed during a rebalance. After each, the state is exact (see ``faults_support``) and nothing lost.

These tests run on a private broker + Redis (module scope) so a paused broker or a restarted Redis never
disturbs other tests. The input is the generated history, shuffled, with 5% of events sent twice.

"Broker unreachable": Tansu keeps data in memory only, so stopping it would lose the topics. The broker is
made unreachable without losing anything by freezing it with SIGSTOP (connections stay open but nothing
answers, exactly like a partitioned or hung broker) and thawing it with SIGCONT.

Each test prints one ``FAULT-RESULT {json}`` line with what it measured (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segstream.embedded import EmbeddedStack
from tests.integration.faults_support import (
    Dataset,
    WorkerConfig,
    WorkerProcess,
    build_dataset,
    check_exact,
    done_count,
    free_port,
    make_records,
    produce,
    redis_sync,
    scored_event_ids,
    wait_drained,
    wait_until,
)

DUPLICATES = 0.05


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A broker + Redis (AOF, fsync always) of this module's own."""
    stack = EmbeddedStack(tmp_path_factory.mktemp("fault-stack"), kafka_port=free_port(), redis_port=free_port())
    stack.up(timeout=30)
    try:
        yield stack
    finally:
        kafka_pid = stack.status()["kafka"]["pid"]
        if kafka_pid:  # never leave a frozen broker behind
            os.kill(kafka_pid, signal.SIGCONT)
        stack.down()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """300 customers, a year, ~6k events, with a promoted bundle (built once per session)."""
    return build_dataset(tmp_path_factory.getbasetemp() / "faults-dataset")


@pytest.fixture
def config(fault_stack: EmbeddedStack, dataset: Dataset, tmp_path: Path) -> WorkerConfig:
    """Fresh topics, group and key prefix for one test."""
    cfg = WorkerConfig(fault_stack.kafka_bootstrap, fault_stack.redis_url, dataset.models_root, tmp_path)
    cfg.create_topics()
    return cfg


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Workers started by a test; all killed at teardown (their logs are printed on failure)."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def _ready_worker(config: WorkerConfig, workers: list[WorkerProcess]) -> WorkerProcess:
    """Start a worker (the ``workers`` fixture stops it at teardown) and wait until it is ready."""
    worker = WorkerProcess(config)
    workers.append(worker)
    worker.start()
    worker.wait_ready()
    return worker


def _report(name: str, **measured: Any) -> None:
    print(f"FAULT-RESULT {json.dumps({'fault': name, **measured}, default=str)}")


def _background_produce(records: list[dict[str, Any]], config: WorkerConfig, rate: float | None) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            produce(records, config.kafka, config.topics["transactions"], rate=rate)
        except BaseException as exc:  # surfaced by _join
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def _join(thread: threading.Thread, timeout: float = 120) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), "producer did not finish"
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]


def _assert_exact_and_complete(config: WorkerConfig, dataset: Dataset) -> dict[str, Any]:
    report = check_exact(config, dataset)
    assert report.exact, report.summary()
    missing = set(dataset.event_ids) - scored_event_ids(config)
    assert not missing, f"{len(missing)} events never reached {config.topics['scored']}: {sorted(missing)[:5]}"
    return {"customers": report.customers, "exact": True}


def test_sigkill_at_random_points_several_times(config: WorkerConfig, dataset: Dataset,
                                                workers: list[WorkerProcess]) -> None:  # fmt: skip
    rng = random.Random(int(os.environ.get("SEGSTREAM_TEST_FAULT_SEED", "20261123")))
    records = make_records(dataset.events, shuffle_seed=3, duplicate_fraction=DUPLICATES)
    ids = dataset.event_keys
    client = redis_sync(config.redis)
    worker = _ready_worker(config, workers)
    # ~30 s of traffic: a restart takes ~6 s (imports, group join), so the kills land mid-stream.
    producer = _background_produce(records, config, rate=len(records) / 30)
    kills: list[dict[str, Any]] = []
    for _ in range(3):
        delay = rng.uniform(0.2, 3.0)  # after the worker is ready: mid-batch, mid-commit, between batches
        time.sleep(delay)
        before = done_count(client, config.prefix, ids)
        worker.kill(signal.SIGKILL)
        started = time.monotonic()
        worker.start()
        kills.append({"after_s": round(delay, 2), "done_at_kill": before, "ready_s": round(worker.wait_ready(), 2),
                      "restart_s": round(time.monotonic() - started, 2)})  # fmt: skip
    _join(producer)
    drained = wait_drained(client, config.prefix, ids, timeout=120)
    result = _assert_exact_and_complete(config, dataset)
    assert worker.log().count("[^Worker]: Ready") == 4
    assert kills[0]["done_at_kill"] < len(ids), "the first kill should land before the replay is done"
    _report("sigkill x3", events=len(ids), sent=len(records), kills=kills, drain_after_last_restart_s=round(drained, 1),
            **result)  # fmt: skip


def test_redis_restart_mid_replay_with_aof(fault_stack: EmbeddedStack, config: WorkerConfig, dataset: Dataset,
                                           workers: list[WorkerProcess]) -> None:  # fmt: skip
    records = make_records(dataset.events, shuffle_seed=4, duplicate_fraction=DUPLICATES)
    ids = dataset.event_keys
    client = redis_sync(config.redis)
    worker = _ready_worker(config, workers)
    producer = _background_produce(records, config, rate=600)
    wait_until(lambda: done_count(client, config.prefix, ids) > 1000, 60, what="1000 events done")
    done_before = done_count(client, config.prefix, ids)
    fault_stack.stop_service("redis", signal.SIGKILL)  # a crash: only the AOF (fsync always) survives
    down_at = time.monotonic()
    time.sleep(4)
    assert worker.alive(), worker.log()[-3000:]
    fault_stack.start_service("redis")
    up_at = time.monotonic()
    client = redis_sync(config.redis)
    done_after_restart = done_count(client, config.prefix, ids)
    _join(producer)
    drained = wait_drained(client, config.prefix, ids, timeout=120)
    log = worker.log()
    retries = log.count("failed (attempt")
    assert retries >= 1, "the worker never logged a back-off while Redis was down"
    assert "nothing is dropped" in log
    assert worker.alive() and worker.starts == 1, "the worker should survive a Redis restart without a restart"
    assert done_after_restart >= done_before, "the AOF lost acknowledged state"
    result = _assert_exact_and_complete(config, dataset)
    _report("redis SIGKILL + restart mid-replay", events=len(ids), down_s=round(up_at - down_at, 1),
            done_before=done_before, done_after_restart=done_after_restart, retry_log_lines=retries,
            recovered_and_drained_s=round(drained, 1), **result)  # fmt: skip


def test_redis_unreachable_at_worker_start(fault_stack: EmbeddedStack, config: WorkerConfig, dataset: Dataset,
                                           workers: list[WorkerProcess]) -> None:  # fmt: skip
    records = make_records(dataset.events, shuffle_seed=5, duplicate_fraction=DUPLICATES)
    ids = dataset.event_keys
    produce(records, config.kafka, config.topics["transactions"])
    fault_stack.stop_service("redis")
    try:
        worker = _ready_worker(config, workers)
        first_line = wait_until(lambda: "failed (attempt" in worker.log(), 60, what="a retry log line")
        status, body = worker.http("/health")
        assert status == 503 and "state store" in body, (status, body)
        time.sleep(3)  # a few back-off rounds
        assert worker.alive(), worker.log()[-3000:]
        line = next(x for x in worker.log().splitlines() if "failed (attempt" in x)
        assert "retrying in" in line and "nothing is dropped" in line
    finally:
        fault_stack.start_service("redis")
    up_at = time.monotonic()
    client = redis_sync(config.redis)
    drained = wait_drained(client, config.prefix, ids, timeout=120)
    assert worker.http("/health")[0] == 200
    result = _assert_exact_and_complete(config, dataset)
    _report("redis down at worker start", events=len(ids), first_retry_line_after_ready_s=round(first_line, 1),
            retry_log_lines=worker.log().count("failed (attempt"), example_line=line.split("WARNING", 1)[-1][:200],
            drained_after_redis_up_s=round(time.monotonic() - up_at, 1), wait_drained_s=round(drained, 1),
            **result)  # fmt: skip


def test_broker_unreachable_for_a_while(fault_stack: EmbeddedStack, config: WorkerConfig, dataset: Dataset,
                                        workers: list[WorkerProcess]) -> None:  # fmt: skip
    records = make_records(dataset.events, shuffle_seed=6, duplicate_fraction=DUPLICATES)
    half = len(records) // 2
    ids = dataset.event_keys
    client = redis_sync(config.redis)
    produce(records[:half], config.kafka, config.topics["transactions"])
    worker = _ready_worker(config, workers)
    wait_until(lambda: done_count(client, config.prefix, ids) > 500, 60, what="500 events done")
    kafka_pid = fault_stack.status()["kafka"]["pid"]
    pause_s = 15.0  # longer than the 6 s session timeout: the group membership expires meanwhile
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        time.sleep(pause_s)
        assert worker.alive(), worker.log()[-3000:]
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    resumed = time.monotonic()
    produce(records[half:], config.kafka, config.topics["transactions"])
    drained = wait_drained(client, config.prefix, ids, timeout=180)
    assert worker.alive() and worker.starts == 1, "the worker should reconnect by itself"
    result = _assert_exact_and_complete(config, dataset)
    _report("broker frozen (SIGSTOP) for 15 s", events=len(ids), pause_s=pause_s,
            caught_up_after_resume_s=round(time.monotonic() - resumed, 1), wait_drained_s=round(drained, 1),
            rejoins=worker.log().count("Joined group"), **result)  # fmt: skip


def test_two_workers_one_killed_during_rebalance(config: WorkerConfig, dataset: Dataset,
                                                 workers: list[WorkerProcess]) -> None:  # fmt: skip
    records = make_records(dataset.events, shuffle_seed=7, duplicate_fraction=DUPLICATES)
    ids = dataset.event_keys
    client = redis_sync(config.redis)
    first = WorkerProcess(config, name="worker-a")
    second = WorkerProcess(config, name="worker-b")
    workers += [first, second]
    first.start()
    first.wait_ready()
    producer = _background_produce(records, config, rate=500)
    time.sleep(2)
    second.start()
    # The first worker learns of the new member at its next heartbeat and rejoins: kill it right then.
    wait_until(lambda: first.log().count("(Re-)joining group") >= 2, 60, interval=0.05, what="rebalance to start")
    done_at_kill = done_count(client, config.prefix, ids)
    first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    _join(producer)
    drained = wait_drained(client, config.prefix, ids, timeout=180)
    assert second.alive(), second.log()[-3000:]
    result = _assert_exact_and_complete(config, dataset)
    _report("two workers, one SIGKILLed while rebalancing", events=len(ids), done_at_kill=done_at_kill,
            drained_after_kill_s=round(time.monotonic() - killed_at, 1), wait_drained_s=round(drained, 1),
            survivor_joins=second.log().count("Joined group"), **result)  # fmt: skip
