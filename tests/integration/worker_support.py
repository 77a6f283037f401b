"""Helpers for the worker integration tests: a trained bundle, a worker subprocess, reading topics and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segstream.bench.procs import read_metrics, segstream_command
from segstream.settings import KafkaSettings
from tests.integration.conftest import StackHandle, free_port

_TRAINED: dict[tuple[int, int, int], tuple[pd.DataFrame, Path]] = {}


def clean_history(customers: int, days: int, seed: int) -> pd.DataFrame:
    """A generated history, cleaned exactly as ``segstream train``/``replay`` clean it."""
    from segstream.trainer.cleaning import clean_transactions
    from segstream.trainer.generate import generate_transactions

    raw = generate_transactions(customers, days, seed, dirty_fraction=0.0)
    clean, _ = clean_transactions(raw, source="generated")
    return clean


def trained(tmp_root: Path, customers: int = 800, days: int = 365, seed: int = 7) -> tuple[pd.DataFrame, Path]:
    """(clean events, models root with a promoted bundle), trained once per process and arguments."""
    key = (customers, days, seed)
    if key not in _TRAINED:
        from segstream.models.bundle import promote
        from segstream.trainer.pipeline import TrainOptions, train_bundle

        events = clean_history(customers, days, seed)
        root = tmp_root / f"models-{customers}-{days}-{seed}"
        result = train_bundle(events, root / "first", options=TrainOptions(k_range=range(3, 6), seed=seed))
        promote(result.bundle_dir, root)
        _TRAINED[key] = (events, root)
    return _TRAINED[key]


@dataclass
class WorkerEnv:
    """One isolated worker setup: its own topics, consumer group, Redis key prefix and HTTP port."""

    stack: StackHandle
    models_root: Path
    workdir: Path
    extra: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    web_port: int = field(default_factory=free_port)

    @property
    def topics(self) -> dict[str, str]:
        names = ("transactions", "scored", "segment_changes", "sales_forecasts", "dead_letters", "monitoring",
                 "campaign_triggers", "customer_profiles")
        return {n: f"{n.replace('_', '-')}-{self.tag}" for n in names}

    @property
    def prefix(self) -> str:
        return f"t{self.tag}"

    @property
    def kafka(self) -> KafkaSettings:
        return self.stack.settings.kafka

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.stack.kafka_bootstrap,
            "SEGSTREAM_REDIS_URL": self.stack.redis_url,
            "SEGSTREAM_REDIS_KEY_PREFIX": self.prefix,
            "SEGSTREAM_MODEL_ROOT": str(self.models_root),
            "SEGSTREAM_WEB_PORT": str(self.web_port),
            "SEGSTREAM_WORKER_GROUP_ID": f"worker-{self.tag}",
            "SEGSTREAM_STACK_STATE_DIR": str(self.workdir / "stack-unused"),
            **{f"SEGSTREAM_TOPIC_{k.upper()}": v for k, v in self.topics.items()},
            **self.extra,
        })  # fmt: skip
        return env

    def create_topics(self, partitions: int = 4) -> None:
        from segstream.streams.topics import ensure_topics, wait_for_topics

        ensure_topics(self.kafka, list(self.topics.values()), partitions=partitions)
        wait_for_topics(self.kafka, list(self.topics.values()), timeout=15)

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}-{self.tag}.log", "ab")  # noqa: SIM115 - owned by the process
        return subprocess.Popen(segstream_command("worker"), env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.workdir)  # fmt: skip

    def log_text(self, name: str = "worker") -> str:
        path = self.workdir / f"{name}-{self.tag}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def http(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as resp:  # noqa: S310
                body = resp.read().decode()
                return resp.status, (json.loads(body) if "json" in resp.headers.get("Content-Type", "") else body)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode() or "null")

    def wait_http(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                self.http("/metrics")
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker HTTP did not come up:\n{self.log_text()[-3000:]}")

    def metrics(self) -> dict[str, float]:
        found = read_metrics(self.web_port)
        assert found is not None, f"worker on :{self.web_port} does not answer /metrics"
        return found


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop a worker we started (by its pid)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every JSON record of a topic, from the beginning to its current end."""
    return [value for _, _, value in read_placed(kafka, topic, timeout)]


def read_placed(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> list[tuple[int, bytes | None, Any]]:
    """Every record of a topic as (partition, key, decoded JSON value), from the beginning to its current end."""
    from segstream.topic_reader import read_records

    return [(r.partition, r.key, json.loads(r.value)) for r in read_records(kafka, topic, timeout_s=timeout)]


def done_count(redis_client: Any, prefix: str, events: Sequence[tuple[str, str]], chunk: int = 5000) -> int:
    """How many of the ``(event_id, customer_id)`` events the store has marked done ("2").

    Markers live in the shard of the event's customer, so the customer is needed to find one; an MGET per
    shard keeps each call in one slot (on a Redis Cluster too).
    """
    from segstream.models.state_keys import KeySpace

    keys = KeySpace(prefix)
    by_shard: dict[int, list[str]] = {}
    for event_id, customer_id in events:
        by_shard.setdefault(keys.shard_of(customer_id), []).append(keys.event(event_id, customer_id))
    total = 0
    for shard_keys in by_shard.values():
        for start in range(0, len(shard_keys), chunk):
            total += sum(1 for v in redis_client.mget(shard_keys[start : start + chunk]) if v in (b"2", "2"))
    return total


def wait_until(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
               log: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) while waiting for {what}:\n"
                                 f"{(log() if log else '')[-3000:]}")  # fmt: skip
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{(log() if log else '')[-3000:]}")
