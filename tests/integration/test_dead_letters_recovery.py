"""A batch dead-lettered under a too-strict setting is recovered with ``segstream dead-letters replay``.

The worker starts with SEGSTREAM_EVENTS_MIN_TIMESTAMP=2000-01-01 (the old floor) and receives purchases
from 1997: every one is dead-lettered with ``timestamp_out_of_range``. After the worker is restarted with
the default contract, ``dead-letters replay --reason timestamp_out_of_range`` sends them again and every
event is folded once; a second replay changes nothing (the events keep their ids).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.worker_support import WorkerEnv, done_count, read_topic, stop, trained, wait_until

pytestmark = pytest.mark.integration

N_EVENTS = 60


def _cli(env: WorkerEnv, *args: str, extra: dict[str, str] | None = None) -> str:
    code = "from segstream.cli.main import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], env={**env.env(), **(extra or {})},
                          capture_output=True, text=True, timeout=120, cwd=env.workdir)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_dead_letters_summary_and_replay_recover_a_batch_refused_by_a_too_strict_floor(
    embedded_stack, redis_client, tmp_path_factory
):
    _, models_root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=3)
    workdir = tmp_path_factory.mktemp("dead-letters")
    strict = {"SEGSTREAM_EVENTS_MIN_TIMESTAMP": "2000-01-01T00:00:00Z", "SEGSTREAM_WORKER_MONITORING_INTERVAL_S": "1"}
    env = WorkerEnv(embedded_stack, models_root, workdir, extra=strict)
    env.create_topics(partitions=2)
    data = workdir / "cdnow-like.csv"
    rows = [f"p{i},C{i % 12},1997-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z,{10 + i}.50" for i in range(N_EVENTS)]
    data.write_text("event_id,customer_id,timestamp,amount\n" + "\n".join(rows) + "\n")
    ids = [f"p{i}" for i in range(N_EVENTS)]
    keys = [(f"p{i}", f"C{i % 12}") for i in range(N_EVENTS)]

    proc = env.start_worker()
    try:
        env.wait_http(proc)
        # replay runs with the default contract (1970 floor), so it sends every row; the worker refuses them.
        out = _cli(env, "replay", str(data), extra={"SEGSTREAM_EVENTS_MIN_TIMESTAMP": "1970-01-01T00:00:00Z"})
        assert "the worker accepts every row" in out and f"sent {N_EVENTS} events" in out
        wait_until(lambda: len(read_topic(env.kafka, env.topics["dead_letters"])) >= N_EVENTS, 60,
                   "the dead letters", proc, env.log_text)  # fmt: skip
        summary = json.loads(_cli(env, "dead-letters", "--json"))
        assert summary["total"] == N_EVENTS
        assert [(r["reason_code"], r["count"]) for r in summary["by_reason"]] == [("timestamp_out_of_range", N_EVENTS)]
        assert "outside 2000-01-01" in summary["by_reason"][0]["example"]
        assert done_count(redis_client, env.prefix, keys) == 0
    finally:
        stop(proc)

    env.extra = {"SEGSTREAM_WORKER_MONITORING_INTERVAL_S": "1"}  # the fix: back to the default floor
    proc = env.start_worker("worker-fixed")
    try:
        env.wait_http(proc)
        dry = _cli(env, "dead-letters", "replay", "--reason", "timestamp_out_of_range", "--dry-run")
        assert f"would send {N_EVENTS} dead letters" in dry
        assert "would send 0" in _cli(env, "dead-letters", "replay", "--reason", "not_json", "--dry-run")
        out = _cli(env, "dead-letters", "replay", "--reason", "timestamp_out_of_range")
        assert f"sent {N_EVENTS} dead letters" in out
        wait_until(lambda: done_count(redis_client, env.prefix, keys) == N_EVENTS, 60, "the replayed events", proc,
                   lambda: env.log_text("worker-fixed"))  # fmt: skip
        scored = read_topic(env.kafka, env.topics["scored"])
        assert sorted(r["event_id"] for r in scored) == sorted(ids)

        # A second replay of the same records: every event is a duplicate the worker skips.
        _cli(env, "dead-letters", "replay", "--reason", "timestamp_out_of_range")
        wait_until(lambda: env.metrics().get("segstream_duplicates_total", 0) >= N_EVENTS, 60,
                   "the second replay to be skipped", proc, lambda: env.log_text("worker-fixed"))  # fmt: skip
        assert len(read_topic(env.kafka, env.topics["scored"])) == N_EVENTS
        assert len(read_topic(env.kafka, env.topics["dead_letters"])) == N_EVENTS
    finally:
        stop(proc)
