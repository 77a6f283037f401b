"""Soak: a long steady stream through the real worker; the worker's RSS and Redis memory stay flat after
warm-up, and dedupe markers do not outlive their TTL.

``test_soak_small`` (default CI run): 30k events, a few hundred customers, ~30 s. ``test_soak_1m`` (marked
``slow``): one million events over 20k customers at a rate the worker sustains. Both print a
``SOAK-RESULT {json}`` line with the sampled curves (seconds, events processed, worker RSS MiB, Redis
used_memory MiB, live dedupe markers); run with ``-s`` to see it.

Event time advances steadily over two years, so customers' day buckets reach their steady state (the 365-day
retention prunes old ones) in the first half; "flat after warm-up" is checked on the second half.

The dedupe TTL is shortened for the test with the ``SEGSTREAM_REDIS_DEDUPE_TTL_S`` setting. With the default
7-day TTL the markers, and so Redis memory, grow with every event for a week by design.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segstream.models.state_keys import KeySpace
from tests.integration.conftest import StackHandle
from tests.integration.faults_support import (
    Dataset,
    WorkerConfig,
    WorkerProcess,
    build_dataset,
    produce_raw,
    redis_sync,
    rss_mb,
    wait_until,
)

START_MS = 1_600_000_000_000
TWO_YEARS_MS = 730 * 86_400_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_dataset(tmp_path_factory.getbasetemp() / "faults-dataset")


def _events(n: int, customers: int, seed: int = 5) -> Iterator[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    who = rng.integers(0, customers, n)
    cents = rng.integers(100, 20_000, n) * np.where(rng.random(n) < 0.05, -1, 1)
    step = TWO_YEARS_MS // n
    for i in range(n):
        cid = f"S{who[i]:06d}"
        value = (f'{{"event_id":"soak-{i}","customer_id":"{cid}","timestamp":{START_MS + i * step},'
                 f'"amount":{cents[i] / 100},"channel":"web"}}')  # fmt: skip
        yield cid.encode(), value.encode()


def _count(client: Any, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(pattern, count=10_000))


def _soak(stack: StackHandle, dataset: Dataset, workdir: Path, *, n: int, customers: int, rate: float,
          ttl_s: int, sample_every_s: float) -> dict[str, Any]:  # fmt: skip
    config = WorkerConfig(stack.kafka_bootstrap, stack.redis_url, dataset.models_root, workdir, partitions=4,
                          extra_env={"SEGSTREAM_REDIS_DEDUPE_TTL_S": str(ttl_s)})  # fmt: skip
    config.create_topics()
    client = redis_sync(config.redis)
    markers = f"{KeySpace(config.prefix).root}:{{*}}:e:*"
    worker = WorkerProcess(config)
    try:
        worker.start()
        worker.wait_ready()
        base_memory = client.info("memory")["used_memory"] / 2**20
        errors: list[BaseException] = []

        def run() -> None:
            try:
                produce_raw(_events(n, customers), config.kafka, config.topics["transactions"], rate=rate)
            except BaseException as exc:  # reported below
                errors.append(exc)

        producer = threading.Thread(target=run, daemon=True)
        started = time.monotonic()
        producer.start()
        curve: list[dict[str, float]] = []
        processed = 0.0
        while processed < n:
            time.sleep(sample_every_s)
            assert worker.alive(), worker.log()[-3000:]
            assert not errors, errors
            processed = worker.metrics().get("segstream_events_processed_total", processed)
            curve.append({"t": round(time.monotonic() - started, 1), "processed": processed,
                          "rss_mb": round(rss_mb(worker.pid), 1),
                          "redis_mb": round(client.info("memory")["used_memory"] / 2**20, 1),
                          "markers": _count(client, markers)})  # fmt: skip
            assert time.monotonic() - started < n / rate * 3 + 120, f"soak too slow: {curve[-1]}"
        producer.join(30)
        elapsed = time.monotonic() - started
        # After the stream stops, every marker expires within its TTL (plus Redis's active-expiry lag).
        stop = time.monotonic()
        wait_until(lambda: _count(client, markers) == 0, ttl_s + 30, interval=1.0, what="dedupe markers to expire")
        expired_after = time.monotonic() - stop
        customer_keys = _count(client, KeySpace(config.prefix).customer_pattern)
        end_memory = client.info("memory")["used_memory"] / 2**20
        return {"events": n, "customers": customer_keys, "seconds": round(elapsed, 1),
                "events_per_s": round(n / elapsed), "ttl_s": ttl_s, "markers_gone_after_s": round(expired_after, 1),
                "redis_base_mb": round(base_memory, 1), "redis_end_mb": round(end_memory, 1),
                "curve": curve}  # fmt: skip
    finally:
        worker.stop()


def _check_flat(result: dict[str, Any], rate: float, rss_slack_mb: float) -> None:
    curve = result["curve"]
    half = curve[len(curve) // 2 :]
    assert len(half) >= 3, f"too few samples: {curve}"
    settled = statistics.median(s["rss_mb"] for s in half[: max(1, len(half) // 3)])
    peak = max(s["rss_mb"] for s in half)
    assert peak - settled <= rss_slack_mb, f"worker RSS grew after warm-up: {settled} -> {peak} MiB"
    # Live markers are bounded by what arrived within one TTL (plus a sampling interval of slack).
    limit = rate * (result["ttl_s"] + 5) * 1.5
    assert max(s["markers"] for s in curve) <= limit, f"more dedupe markers than one TTL of traffic: {curve}"
    assert result["customers"] <= result["events"]


def test_soak_small(embedded_stack: StackHandle, dataset: Dataset, tmp_path: Path, redis_client: Any) -> None:
    rate = 1500.0
    result = _soak(embedded_stack, dataset, tmp_path, n=30_000, customers=400, rate=rate, ttl_s=5,
                   sample_every_s=1.0)  # fmt: skip
    print(f"SOAK-RESULT {json.dumps(result)}")
    _check_flat(result, rate, rss_slack_mb=25)


@pytest.mark.slow
def test_soak_1m(embedded_stack: StackHandle, dataset: Dataset, tmp_path: Path, redis_client: Any) -> None:
    rate = 3500.0
    result = _soak(embedded_stack, dataset, tmp_path, n=1_000_000, customers=20_000, rate=rate, ttl_s=30,
                   sample_every_s=5.0)  # fmt: skip
    print(f"SOAK-RESULT {json.dumps(result)}")
    _check_flat(result, rate, rss_slack_mb=40)
    curve = result["curve"]
    half = curve[len(curve) // 2 :]
    redis_growth = half[-1]["redis_mb"] - half[0]["redis_mb"]
    assert redis_growth <= max(20.0, 0.15 * half[0]["redis_mb"]), f"Redis memory grew after warm-up: {half}"
