"""Per-customer streaming state behind a small interface chosen by URL."""

from __future__ import annotations

from typing import Any

from segstream.models.state_keys import DEFAULT_SHARDS
from segstream.redis_clients import is_cluster_url
from segstream.streams.state.base import (
    DEFAULT_DEDUPE_TTL_S,
    ApplyResult,
    CustomerView,
    Delivery,
    Finalization,
    SegmentChange,
    SegmentRecord,
    StateStore,
    StateStoreError,
)
from segstream.streams.state.memory_store import MemoryStateStore
from segstream.streams.state.redis_store import DEFAULT_FOLD, DEFAULT_FOLD_CACHE, RedisStateStore

__all__ = [
    "ApplyResult",
    "CustomerView",
    "Delivery",
    "Finalization",
    "MemoryStateStore",
    "RedisStateStore",
    "SegmentChange",
    "SegmentRecord",
    "StateStore",
    "StateStoreError",
    "open_store",
]


def open_store(
    url: str,
    prefix: str = "segstream",
    dedupe_ttl_s: int = DEFAULT_DEDUPE_TTL_S,
    shards: int = DEFAULT_SHARDS,
    fold_cache: int = DEFAULT_FOLD_CACHE,
    fold: str = DEFAULT_FOLD,
    **client_kwargs: Any,
) -> StateStore:
    """A state store for ``redis://``/``rediss://`` (a real server), ``redis+cluster://`` (a Redis Cluster)
    or ``memory://`` (in-process). ``fold``: where a Redis store folds batches ("redis" or "worker");
    ``fold_cache``: customers whose parsed fold it keeps when the worker folds."""
    if url.startswith("memory://"):
        return MemoryStateStore()
    if url.startswith(("redis://", "rediss://", "unix://")) or is_cluster_url(url):
        return RedisStateStore.from_url(
            url, prefix=prefix, dedupe_ttl_s=dedupe_ttl_s, shards=shards, fold_cache=fold_cache, fold=fold,
            **client_kwargs,
        )
    raise StateStoreError(
        f"unsupported state store URL {url!r}: use redis://, rediss://, redis+cluster:// or memory://"
    )
