"""Clients by URL scheme, and the C command packer giving the same bytes as redis-py's own."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from segstream.redis_clients import async_client, is_cluster_url


def test_the_scheme_picks_the_client():
    assert is_cluster_url("redis+cluster://h:1") and is_cluster_url("rediss+cluster://h:1")
    assert not is_cluster_url("redis://h:1/0") and not is_cluster_url("unix:///tmp/r.sock")
    assert isinstance(async_client("redis+cluster://127.0.0.1:7000", health_check_interval=30), RedisCluster)


def test_packed_commands_are_byte_for_byte_what_redis_py_sends():
    packed = async_client("redis://127.0.0.1:6379/0").connection_pool.make_connection()
    plain = aioredis.Connection()
    for args in (("EVALSHA", "ab12", 2, "k:{s1.2}:c:é", b"raw\x00", -3, 1.5, 1_700_000_000_000),
                 ("CONFIG GET", "appendfsync"), ("SET", "k", "v", "EX", 60)):  # fmt: skip
        assert b"".join(packed.pack_command(*args)) == b"".join(plain.pack_command(*args)), args
    assert type(packed).__name__.startswith("Packed")
