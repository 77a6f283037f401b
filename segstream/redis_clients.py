"""Redis clients by URL: ``redis://``/``rediss://``/``unix://`` for one server, ``redis+cluster://`` and
``rediss+cluster://`` for a Redis Cluster (any one node's address; the client discovers the rest)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

try:
    import hiredis
except ImportError:  # redis[hiredis] is a dependency; without it redis-py's packer does the work
    hiredis = None
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# Options of a single-server connection that the cluster client takes per node or does not take at all.
_NOT_FOR_CLUSTER = ("health_check_interval", "retry")


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://``."""
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def _node_url(url: str) -> str:
    return url.replace("+cluster://", "://", 1)


def _cluster_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in _NOT_FOR_CLUSTER}


class _HiredisPacking:
    """Packs commands with hiredis's C packer instead of redis-py's Python one (asyncio redis-py has no
    switch for it). A batch's scripts declare every key they touch, a few arguments per event, and the
    Python packer cost ~2 us per argument: a third of the store's client time."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "CONFIG GET": the server wants two words
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


_PACKED: dict[type, type] = {}


def _packed(connection_class: type) -> type:
    found = _PACKED.get(connection_class)
    if found is None:
        name = f"Packed{connection_class.__name__}"
        found = _PACKED[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return found


def async_client(url: str, **kwargs: Any) -> aioredis.Redis | AsyncRedisCluster:
    """An asyncio client for one Redis or a Redis Cluster, chosen by the URL's scheme."""
    if is_cluster_url(url):
        return AsyncRedisCluster.from_url(_node_url(url), **_cluster_options(kwargs))
    client = aioredis.from_url(url, **kwargs)
    if hiredis is not None and hasattr(hiredis, "pack_command"):
        pool = client.connection_pool
        pool.connection_class = _packed(pool.connection_class)  # connections are made lazily, with this class
    return client


def sync_client(url: str, **kwargs: Any) -> redis.Redis | RedisCluster:
    """A blocking client for one Redis or a Redis Cluster, chosen by the URL's scheme."""
    if is_cluster_url(url):
        return RedisCluster.from_url(_node_url(url), **_cluster_options(kwargs))
    return redis.Redis.from_url(url, **kwargs)
