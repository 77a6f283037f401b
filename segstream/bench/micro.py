"""Micro-benchmarks of the worker's hot path, each against its slow alternative.

* Scoring: the numpy scorers the worker uses (:class:`~segstream.models.serving.ServingModels`) against
  the bundle's fitted scikit-learn objects, per batch size, in rows/s; plus an exact-equality check of the
  labels on every row (K-Means segments and the decision tree).
* Redis state update: :meth:`RedisStateStore.apply` (and apply + finalize) per batch size, events/s.
* JSON: decode, ``parse_event`` (decode + validate) and the scored-payload encode, per message.

Each timing runs batches until a time budget is spent, so the slow side (sklearn on one row) stays short.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from segstream.models.state_keys import DEFAULT_SHARDS

SCORING_BATCHES: tuple[int, ...] = (1, 10, 100, 500, 5000)
REDIS_BATCHES: tuple[int, ...] = (1, 10, 100, 500, 2000)


def _rate(fn: Callable[[int], int], budget_s: float) -> float:
    """Call ``fn(i)`` (returns items done) until ``budget_s`` is spent; items per second."""
    done, i = 0, 0
    started = time.perf_counter()
    while True:
        done += fn(i)
        i += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget_s:
            return done / elapsed


def feature_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Realistic feature rows: batch features of a generated history, jittered to ``rows`` distinct rows."""
    from segstream.models.features import FEATURE_NAMES, batch_features
    from segstream.trainer.cleaning import clean_transactions
    from segstream.trainer.generate import generate_transactions

    raw = generate_transactions(max(200, min(rows, 5000)), 365, seed, dirty_fraction=0.0)
    clean, _ = clean_transactions(raw, "bench-micro")
    base = batch_features(clean)[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    picked = base[rng.integers(0, len(base), rows)]
    return np.ascontiguousarray(picked * rng.lognormal(0.0, 0.2, picked.shape))


def scoring(bundle_dir: Path, rows: int = 100_000, budget_s: float = 0.4, seed: int = 0) -> dict[str, Any]:
    """Vectorised scorers vs scikit-learn: rows/s per batch size and exact label equality on ``rows`` rows."""
    from segstream.bench.baseline import SklearnSegments
    from segstream.models.bundle import load_bundle

    loaded = load_bundle(Path(bundle_dir), only=["serving", "segmentation", "classifier"])
    serving = loaded.artifact("serving")
    sk = SklearnSegments(loaded.artifact("segmentation"))
    clf = loaded.artifact("classifier")
    x = feature_rows(rows, seed)
    fast_all = np.concatenate([serving.predict_segments(x[i : i + 500]) for i in range(0, rows, 500)])
    slow_all = sk.predict(x)
    tree_fast = serving.tree.predict(x)
    tree_slow = clf.model.predict(np.ascontiguousarray(x[:, serving.tree.columns]))
    per_batch = []
    for size in SCORING_BATCHES:
        starts = max(1, rows // size)

        def fast(i: int, size: int = size, starts: int = starts) -> int:
            s = (i % starts) * size
            return len(serving.predict_segments(x[s : s + size]))

        def slow(i: int, size: int = size, starts: int = starts) -> int:
            s = (i % starts) * size
            return len(sk.predict(x[s : s + size]))

        vec, skl = _rate(fast, budget_s), _rate(slow, budget_s)
        per_batch.append({"batch": size, "vectorised_rows_per_s": vec, "sklearn_rows_per_s": skl,
                          "speedup": vec / skl if skl else None})  # fmt: skip
    seg_mismatch = int(np.count_nonzero(fast_all != slow_all))
    tree_mismatch = int(np.count_nonzero(tree_fast != np.asarray(tree_slow)))
    return {
        "rows_checked": rows,
        "segment_mismatches": seg_mismatch,
        "tree_mismatches": tree_mismatch,
        "labels_equal": seg_mismatch == 0 and tree_mismatch == 0,
        "batches": per_batch,
    }


def _events(n: int, customers: int, run: str) -> list[Any]:
    from segstream.models.events import Event

    base = 1_735_689_600_000
    return [Event(f"{run}-{i}", f"R{i % customers:07d}", base + i * 60_000, (100 + i % 5000) / 100,
                  100 + i % 5000, {}) for i in range(n)]  # fmt: skip


async def _redis_batches(url: str, client_kwargs: dict[str, Any], prefix: str, budget_s: float,
                         shards: int) -> list[dict[str, Any]]:  # fmt: skip
    from segstream.bench.memory import _delete_prefix
    from segstream.redis_clients import async_client
    from segstream.streams.state import Finalization, RedisStateStore

    client = async_client(url, **client_kwargs)
    store = RedisStateStore(client, prefix=prefix, shards=shards)
    out = []
    try:
        for size in REDIS_BATCHES:
            for with_finalize in (False, True):
                done, calls, run = 0, 0, f"b{size}{'f' if with_finalize else 'a'}"
                started = time.perf_counter()
                while time.perf_counter() - started < budget_s:
                    events = _events(size, max(1, size // 2), f"{run}-{calls}")
                    await store.apply(events)
                    if with_finalize:
                        await store.finalize(Finalization({}, [], [], [e.event_id for e in events], {}))
                    done += size
                    calls += 1
                elapsed = time.perf_counter() - started
                out.append({"batch": size, "finalize": with_finalize, "events_per_s": done / elapsed,
                            "ms_per_batch": 1000 * elapsed / calls})  # fmt: skip
    finally:
        await _delete_prefix(client, prefix)
        await client.aclose()
    return out


def redis_state(url: str, client_kwargs: dict[str, Any], prefix: str, budget_s: float = 0.5,
                shards: int = DEFAULT_SHARDS) -> list[dict[str, Any]]:  # fmt: skip
    """``RedisStateStore.apply`` (alone and with ``finalize``) per batch size: events/s and ms per batch."""
    return asyncio.run(_redis_batches(url, client_kwargs, prefix, budget_s, shards))


def json_codec(values: Sequence[bytes], budget_s: float = 0.4) -> dict[str, float]:
    """Messages per second for ``json.loads``, ``orjson.loads`` (what ``parse_event`` decodes with),
    ``parse_event`` (decode and validate) and the scored payload encode."""
    from segstream.models.events import parse_event
    from segstream.streams.outputs import scored_payload

    sample = list(values[:20_000])
    events = [parse_event(v) for v in sample]
    n = len(sample)

    def loads(i: int) -> int:
        for v in sample[(i * 1000) % n : (i * 1000) % n + 1000]:
            json.loads(v)
        return min(1000, n - (i * 1000) % n)

    def orjson_loads(i: int) -> int:
        for v in sample[(i * 1000) % n : (i * 1000) % n + 1000]:
            orjson.loads(v)
        return min(1000, n - (i * 1000) % n)

    def parse(i: int) -> int:
        for v in sample[(i * 1000) % n : (i * 1000) % n + 1000]:
            parse_event(v)
        return min(1000, n - (i * 1000) % n)

    def encode(i: int) -> int:
        chunk = events[(i * 1000) % n : (i * 1000) % n + 1000]
        for e in chunk:
            scored_payload(e, 1, "Champions", "v1", "2025-01-01T00:00:00.000Z")
        return len(chunk)

    return {
        "json_loads_per_s": _rate(loads, budget_s),
        "orjson_loads_per_s": _rate(orjson_loads, budget_s),
        "parse_event_per_s": _rate(parse, budget_s),
        "scored_encode_per_s": _rate(encode, budget_s),
        "bytes_per_message": sum(len(v) for v in sample) / n if n else 0.0,
    }
