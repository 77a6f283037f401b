"""Helpers for the fault, soak, fuzz and security tests: a trained bundle, the worker as a real subprocess,
producing and reading topics, waiting for the state to drain, and the exactness check.

"Exact" (issue 5): after the worker has drained a replay and every customer has been re-scored as of the
final watermark (:func:`segstream.streams.sweep.rescore_all`, as the parity test does), every customer's
aggregates and features in Redis equal :func:`segstream.models.features.batch_features` over the same clean
file, the watermark equals the batch as-of time, and every stored segment equals batch scoring with the
same bundle. Nothing lost: every event id's dedupe marker says "done" and every event id appears in
``transactions.scored``.

The worker runs as ``segstream worker`` in its own process (``start_new_session``) so tests can SIGKILL it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.bench.procs import free_port, read_metrics, segstream_command
from segstream.settings import KafkaSettings, RedisSettings
from tests.integration.worker_support import done_count  # noqa: F401 - the tests import it from here too

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "") -> float:
    """Poll ``predicate`` until truthy; returns the seconds it took. Raises AssertionError on timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """A generated history, its clean events, and a bundle trained on it (promoted under ``models_root``)."""

    csv: Path
    models_root: Path
    bundle: Path
    version: str
    events: pd.DataFrame

    @property
    def event_ids(self) -> list[str]:
        """Every clean event id (unique)."""
        return self.events["event_id"].astype(str).tolist()

    @property
    def event_keys(self) -> list[tuple[str, str]]:
        """``(event_id, customer_id)`` of every clean event: what finds its dedupe marker."""
        return list(zip(self.event_ids, self.events["customer_id"].astype(str), strict=True))


def _segstream(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    cmd = segstream_command(*args)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)  # noqa: S603
    if done.returncode != 0:
        raise AssertionError(f"segstream {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def build_dataset(base: Path, customers: int = 300, days: int = 365, seed: int = 11) -> Dataset:
    """Generate a history and train + promote a bundle on it, once per ``base`` directory (cached).

    Generated with ``--dirty-fraction 0`` so every row of the file is a valid event.
    """
    from segstream.cli.data import load_and_clean
    from segstream.models.bundle import current_version, resolve_current

    base.mkdir(parents=True, exist_ok=True)
    csv = base / "history.csv"
    models = base / "models"
    if not (models / "current").exists():
        _segstream("generate", "--customers", str(customers), "--days", str(days), "--seed", str(seed),
                   "--dirty-fraction", "0", "--out", str(csv), cwd=base)  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        _segstream("train", "--data", str(csv), "--out", str(models / "b1"), "--promote", "--k", "4",
                   cwd=base, env=env)  # fmt: skip
    events, _ = load_and_clean(str(csv), None, None, echo=False)
    version = current_version(models)
    assert version is not None
    return Dataset(csv, models, resolve_current(models), version, events)


def make_records(
    events: pd.DataFrame, *, shuffle_seed: int | None = None, duplicate_fraction: float = 0.0
) -> list[dict[str, Any]]:
    """Event-contract dicts of a clean frame: in time order, or shuffled, with extra duplicate copies."""
    from segstream.streams.replay import records_from_frame

    records = records_from_frame(events)
    rng = random.Random(shuffle_seed)
    if duplicate_fraction:
        records = records + rng.sample(records, int(len(records) * duplicate_fraction))
    if shuffle_seed is not None:
        rng.shuffle(records)
    return records


def produce(records: Sequence[dict[str, Any]], kafka: KafkaSettings, topic: str, rate: float | None = None) -> int:
    """Produce records keyed by customer with the replay code; returns the count sent."""
    from segstream.streams.replay import replay

    return replay(records, kafka, topic, rate=rate).sent


def produce_raw(
    pairs: Iterable[tuple[bytes | None, bytes | None]], kafka: KafkaSettings, topic: str, rate: float | None = None
) -> int:
    """Produce (key, value) byte pairs exactly as given (at ``rate`` per second, or as fast as possible)."""
    from segstream.streams.replay import replay

    return replay([], kafka, topic, rate=rate, raw_values=pairs).sent


def read_topic(kafka: KafkaSettings, topic: str, timeout: float = 20.0) -> list[tuple[bytes | None, bytes]]:
    """Every message currently in ``topic`` (all partitions, from the beginning, no consumer group)."""
    from segstream.topic_reader import read_records

    return [(r.key, r.value or b"") for r in read_records(kafka, topic, timeout_s=timeout)]


# ------------------------------------------------------------------------------------------------- worker


@dataclass
class WorkerConfig:
    """Everything one worker (group) needs: unique topics, group, key prefix, ports, model root."""

    kafka_bootstrap: str
    redis_url: str
    models_root: Path
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def topics(self) -> dict[str, str]:
        """Topic names by setting name (transactions, scored, segment_changes, ...)."""
        return {
            "transactions": f"tx-{self.tag}",
            "scored": f"scored-{self.tag}",
            "segment_changes": f"changes-{self.tag}",
            "sales_forecasts": f"forecasts-{self.tag}",
            "dead_letters": f"dead-{self.tag}",
            "monitoring": f"monitoring-{self.tag}",
            "customer_profiles": f"profiles-{self.tag}",
        }

    @property
    def prefix(self) -> str:
        """The Redis key prefix of this test's state."""
        return f"t{self.tag}"

    @property
    def kafka(self) -> KafkaSettings:
        """Kafka settings for test-side clients."""
        return KafkaSettings(bootstrap_servers=self.kafka_bootstrap)

    @property
    def redis(self) -> RedisSettings:
        """Redis settings for test-side clients (password from extra_env when given)."""
        password = self.extra_env.get("SEGSTREAM_REDIS_PASSWORD")
        return RedisSettings(url=self.redis_url, password=password, key_prefix=self.prefix)

    def env(self, web_port: int) -> dict[str, str]:
        """The worker's environment: the parent's minus any SEGSTREAM_* setting, plus this config."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update(
            SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS=self.kafka_bootstrap,
            SEGSTREAM_REDIS_URL=self.redis_url,
            SEGSTREAM_REDIS_KEY_PREFIX=self.prefix,
            SEGSTREAM_MODEL_ROOT=str(self.models_root),
            SEGSTREAM_WORKER_GROUP_ID=f"g-{self.tag}",
            SEGSTREAM_WORKER_MONITORING_INTERVAL_S="2",
            SEGSTREAM_WEB_PORT=str(web_port),
            SEGSTREAM_STACK_STATE_DIR=str(self.workdir / "stack-unused"),
            SEGSTREAM_TOPIC_PARTITIONS=str(self.partitions),
            PYTHONUNBUFFERED="1",
        )
        env.update({f"SEGSTREAM_TOPIC_{k.upper()}": v for k, v in self.topics.items()})
        env.update(self.extra_env)
        return env

    def create_topics(self) -> None:
        """Create this config's topics and wait until they are ready."""
        from segstream.streams.topics import ensure_topics, wait_for_topics

        names = list(self.topics.values())
        ensure_topics(self.kafka, names, partitions=self.partitions)
        wait_for_topics(self.kafka, names, timeout=20)


class WorkerProcess:
    """``segstream worker`` as a subprocess with its own log file and HTTP port."""

    def __init__(self, config: WorkerConfig, name: str = "worker") -> None:
        self.config = config
        self.name = name
        self.web_port = free_port()
        self.log_path = config.workdir / f"{name}-{config.tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.starts = 0

    def start(self, loglevel: str = "info") -> WorkerProcess:
        """Start (or restart) the worker process; output appends to :attr:`log_path`."""
        assert self.proc is None or self.proc.poll() is not None, "worker already running"
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                segstream_command("worker", "--loglevel", loglevel),
                cwd=self.config.workdir, env=self.config.env(self.web_port), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        """The process id of the running worker."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def log(self, since_start: bool = False) -> str:
        """The log text (all starts, or only since the latest start)."""
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset :].decode("utf-8", "replace") if since_start else data.decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until faust says the worker is ready (partitions assigned); returns seconds waited."""

        def ready() -> bool:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise AssertionError(f"{self.name} exited ({code}):\n{self.log()[-4000:]}")
            return "[^Worker]: Ready" in self.log(since_start=True)

        return wait_until(ready, timeout, what=f"{self.name} to be ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker (SIGKILL: a crash) and reap it."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the worker quickly (SIGKILL: the tests never depend on a clean shutdown)."""
        self.kill(signal.SIGKILL)

    def http(self, path: str, method: str = "GET") -> tuple[int, str]:
        """(status, body) of a request to the worker's HTTP server; (0, error) when it does not answer."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def metrics(self) -> dict[str, float]:
        """The unlabelled Prometheus samples (empty when the server does not answer)."""
        return read_metrics(self.web_port) or {}


# ----------------------------------------------------------------------------------------- state checking


def redis_sync(settings: RedisSettings) -> Any:
    """A sync redis-py client for test-side inspection."""
    import redis

    return redis.Redis.from_url(settings.url, **settings.client_kwargs())


def wait_drained(client: Any, prefix: str, event_ids: Sequence[tuple[str, str]], timeout: float = 120.0) -> float:
    """Wait until every event id is marked done (survives Redis blips); returns seconds waited."""

    def drained() -> bool:
        try:
            return done_count(client, prefix, event_ids) == len(event_ids)
        except Exception:  # Redis may be restarting in a fault test; keep polling
            return False

    return wait_until(drained, timeout, interval=0.5, what=f"{len(event_ids)} events to be done")


@dataclass
class ExactReport:
    """What the exactness check compared and found."""

    customers: int
    watermark_ms: int
    batch_as_of_ms: int
    missing: list[str]
    extra: list[str]
    aggregate_mismatches: list[str]
    feature_mismatches: list[str]
    segment_mismatches: list[str]
    rescored: int

    @property
    def exact(self) -> bool:
        """True when nothing differs."""
        return (
            self.watermark_ms == self.batch_as_of_ms
            and not self.missing
            and not self.extra
            and not self.aggregate_mismatches
            and not self.feature_mismatches
            and not self.segment_mismatches
        )

    def summary(self) -> str:
        """One line for assertion messages and the test log."""
        return (
            f"customers={self.customers} watermark={self.watermark_ms} batch_as_of={self.batch_as_of_ms} "
            f"missing={self.missing[:5]} extra={self.extra[:5]} aggregates={self.aggregate_mismatches[:5]} "
            f"features={self.feature_mismatches[:5]} segments={self.segment_mismatches[:5]}"
        )


async def _rescore_and_view(config: WorkerConfig, bundle: Path, ids: list[str]) -> tuple[int, int, dict[str, Any]]:
    from aiokafka import AIOKafkaProducer

    from segstream.streams.bundle_watch import load_active
    from segstream.streams.pipeline import PipelineConfig
    from segstream.streams.state import RedisStateStore
    from segstream.streams.sweep import rescore_all

    class _Producer:
        def __init__(self, producer: AIOKafkaProducer) -> None:
            self._producer = producer

        async def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
            return await self._producer.send(topic, value, key=key)

    redis = config.redis
    store = RedisStateStore.from_url(redis.url, prefix=config.prefix, **redis.client_kwargs())
    producer = AIOKafkaProducer(**config.kafka.aiokafka_kwargs(), linger_ms=5)
    await producer.start()
    try:
        topics = config.topics
        pipeline = PipelineConfig(topics["scored"], topics["segment_changes"], topics["dead_letters"])
        result = await rescore_all(store, load_active(bundle), _Producer(producer), pipeline)
        watermark = await store.watermark()
        views = await store.view(ids, watermark)
        return result.evaluated, watermark, views
    finally:
        await producer.stop()
        await store.close()


def check_exact(config: WorkerConfig, dataset: Dataset, events: pd.DataFrame | None = None) -> ExactReport:
    """Re-score everyone as of the watermark, then compare Redis with the batch recomputation (see module doc)."""
    from segstream.models.customer_state import aggregates_matrix
    from segstream.models.features import AGGREGATE_FIELDS, batch_aggregates, features_from_aggregates
    from segstream.streams.bundle_watch import load_active

    events = dataset.events if events is None else events
    batch = batch_aggregates(events)
    as_of = int(batch.attrs["as_of_ms"])
    ids = batch.index.tolist()
    rescored, watermark, views = asyncio.run(_rescore_and_view(config, dataset.bundle, ids))
    batch_x = features_from_aggregates({k: batch[k].to_numpy() for k in AGGREGATE_FIELDS}, as_of)
    model = load_active(dataset.bundle)
    batch_segments = model.predict(batch_x)
    present = [cid for cid in ids if cid in views]
    missing = [cid for cid in ids if cid not in views]
    agg_bad, feat_bad, seg_bad = [], [], []
    if present:
        rows = [views[cid].aggregates for cid in present]
        live_x = features_from_aggregates(aggregates_matrix(rows), watermark)
        position = {cid: i for i, cid in enumerate(ids)}
        for j, cid in enumerate(present):
            i = position[cid]
            expected = {k: int(batch[k].iloc[i]) for k in AGGREGATE_FIELDS}
            if rows[j] != expected:
                agg_bad.append(cid)
            if not np.array_equal(live_x[j], batch_x[i]):
                feat_bad.append(cid)
            record = views[cid].segment
            if record.segment != int(batch_segments[i]) or record.model_version != model.version:
                seg_bad.append(f"{cid}:{record.segment}!={int(batch_segments[i])}")
    return ExactReport(len(ids), watermark, as_of, missing, [], agg_bad, feat_bad, seg_bad, rescored)


def scored_event_ids(config: WorkerConfig) -> set[str]:
    """Event ids found in this config's ``transactions.scored`` topic."""
    return {json.loads(value)["event_id"] for _, value in read_topic(config.kafka, config.topics["scored"])}


def extra_customers(client: Any, prefix: str, expected: Iterable[str]) -> list[str]:
    """Customer keys in Redis under ``prefix`` that the file does not have."""
    from segstream.models.state_keys import KeySpace

    keys = KeySpace(prefix)
    found = {keys.customer_id_of(k.decode() if isinstance(k, bytes) else k)
             for k in client.scan_iter(keys.customer_pattern, count=1000)}  # fmt: skip
    return sorted(found - set(expected))


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20
