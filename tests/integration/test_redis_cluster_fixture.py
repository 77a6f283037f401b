"""The ``redis_cluster`` fixture gives a real, usable Redis Cluster that survives a manual failover."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from segstream.embedded.redis_cluster import RedisClusterHandle


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterHandle) -> Iterator[RedisCluster]:
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.startup_nodes], decode_responses=True
    )
    yield client
    client.close()


def _write_keys(client: RedisCluster, count: int = 300) -> dict[str, str]:
    prefix = uuid.uuid4().hex[:8]
    values = {f"{prefix}:{i}": f"value-{i}" for i in range(count)}
    for key, value in values.items():
        client.set(key, value)
    return values


def test_keys_spread_over_every_master(redis_cluster: RedisClusterHandle, cluster_client: RedisCluster) -> None:
    values = _write_keys(cluster_client)

    assert {key: cluster_client.get(key) for key in values} == values
    for port in redis_cluster.masters():
        with redis.Redis(host="127.0.0.1", port=port) as node:
            assert node.dbsize() > 0, f"master {port} holds none of the keys"


def test_lua_script_on_keys_sharing_a_hash_tag(cluster_client: RedisCluster) -> None:
    swap = cluster_client.register_script(
        "local a = redis.call('GET', KEYS[1]) redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], a) "
        "return a"
    )
    cluster_client.set("{t}a", "first")

    assert swap(keys=["{t}a", "{t}b"], args=["second"]) == "first"
    assert cluster_client.mget("{t}a", "{t}b") == ["second", "first"]


# Runs last in this module: it changes which nodes are masters (the cluster stays healthy).
def test_failover_keeps_every_written_key(redis_cluster: RedisClusterHandle, cluster_client: RedisCluster) -> None:
    values = _write_keys(cluster_client)
    old_master = redis_cluster.masters()[0]

    new_master = redis_cluster.failover(old_master)

    assert new_master in redis_cluster.masters()
    assert old_master not in redis_cluster.masters()
    assert redis_cluster.replica_of(new_master) == old_master
    assert {key: cluster_client.get(key) for key in values} == values
    after = _write_keys(cluster_client, count=50)
    assert {key: cluster_client.get(key) for key in after} == after
    redis_cluster.wait_ok(timeout=10)
