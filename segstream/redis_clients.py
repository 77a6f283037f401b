"""Redis clients by URL: ``redis://``/``rediss://``/``unix://`` for one server, ``redis+cluster://`` and
``rediss+cluster://`` for a Redis Cluster (any one node's address; the client discovers the rest)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
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


def async_client(url: str, **kwargs: Any) -> aioredis.Redis | AsyncRedisCluster:
    """An asyncio client for one Redis or a Redis Cluster, chosen by the URL's scheme."""
    if is_cluster_url(url):
        options = {k: v for k, v in kwargs.items() if k not in _NOT_FOR_CLUSTER}
        return AsyncRedisCluster.from_url(_node_url(url), **options)
    return aioredis.from_url(url, **kwargs)


def sync_client(url: str, **kwargs: Any) -> redis.Redis | RedisCluster:
    """A blocking client for one Redis or a Redis Cluster, chosen by the URL's scheme."""
    if is_cluster_url(url):
        options = {k: v for k, v in kwargs.items() if k not in _NOT_FOR_CLUSTER}
        return RedisCluster.from_url(_node_url(url), **options)
    return redis.Redis.from_url(url, **kwargs)
