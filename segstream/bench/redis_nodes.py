"""Every Redis server behind a store URL, for the bench's server-level readings (``INFO``, ``CONFIG``).

A cluster client sends ``INFO``, ``DBSIZE`` and ``CONFIG`` to one node only, so figures of a Redis Cluster are
read node by node and summed here: CPU over every node (masters and replicas: each burns CPU on the same
machine), memory, keys, AOF bytes and command counts over the masters (replicas hold copies of the same data
and replay the same writes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MASTER, REPLICA = "master", "replica"


@dataclass(frozen=True)
class RedisNode:
    """One server: its ``host:port``, role and a blocking client of its own."""

    address: str
    role: str
    client: Any


class RedisNodes:
    """The single server of a ``redis://`` URL, or each node of a ``redis+cluster://`` one (found from it)."""

    def __init__(self, url: str, client_kwargs: dict[str, Any]) -> None:
        import redis
        from redis.cluster import PRIMARY, RedisCluster

        from segstream.redis_clients import is_cluster_url, sync_client

        self.cluster = is_cluster_url(url)
        self._client = client = sync_client(url, **client_kwargs)
        if isinstance(client, RedisCluster):
            self.nodes = [RedisNode(f"{n.host}:{n.port}", MASTER if n.server_type == PRIMARY else REPLICA,
                                    n.redis_connection) for n in client.get_nodes()]  # fmt: skip
        else:
            parts = urlsplit(url)
            address = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
            self.nodes = [RedisNode(address, MASTER, self._client)]
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    @property
    def masters(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.role == MASTER]

    def describe(self) -> dict[str, Any]:
        """``kind`` (``single`` or ``cluster``), master and replica counts, each node's address and role."""
        return topology(self.cluster, [(n.address, n.role) for n in self.nodes])

    def close(self) -> None:
        self._client.close()


def topology(cluster: bool, nodes: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What the report says about the Redis it measured."""
    masters = sum(1 for _, role in nodes if role == MASTER)
    return {"kind": "cluster" if cluster else "single", "masters": masters, "replicas": len(nodes) - masters,
            "nodes": [{"address": a, "role": r} for a, r in nodes]}  # fmt: skip


def sum_masters(values: Iterable[tuple[str, float | int | None]]) -> float | None:
    """The sum of the masters' values (None when a master did not say)."""
    found = [v for role, v in values if role == MASTER]
    return None if not found or any(v is None for v in found) else sum(v for v in found if v is not None)


def agreed(values: Sequence[Any]) -> Any:
    """The one value every node reported, or all of them in node order when they differ."""
    return values[0] if values and all(v == values[0] for v in values) else list(values)
