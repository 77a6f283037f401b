"""Integration fixtures: one embedded broker + Redis per session, on free loopback ports in a tmp dir.

Set ``SEGSTREAM_TEST_USE_RUNNING=1`` to use the Kafka and Redis that the ``SEGSTREAM_*`` settings point at
instead (e.g. ``segstream stack up`` or docker compose). The ``redis_client`` fixture FLUSHES its database
before every test, so point ``SEGSTREAM_REDIS_URL`` at a throwaway database in that mode.

Every test under ``tests/integration`` gets the ``integration`` marker automatically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from segstream.bench.procs import free_port  # one helper for the bench and the tests
from segstream.embedded import EmbeddedStack
from segstream.settings import KafkaSettings, RedisSettings, Settings, StackSettings
from tests.integration.postgres_fixture import postgres_server  # noqa: F401

_HERE = Path(__file__).parent.resolve()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class StackHandle:
    """What tests need to reach the broker and Redis; ``stack`` is None when using running services."""

    kafka_bootstrap: str
    redis_url: str
    settings: Settings
    stack: EmbeddedStack | None


def _use_running() -> bool:
    return os.environ.get("SEGSTREAM_TEST_USE_RUNNING", "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """Session-wide broker + Redis (started here, or the running ones with SEGSTREAM_TEST_USE_RUNNING=1)."""
    if _use_running():
        settings = Settings.load()
        yield StackHandle(settings.kafka.bootstrap_servers, settings.redis.url, settings, None)
        return
    state_dir = tmp_path_factory.mktemp("stack")
    stack_settings = StackSettings(state_dir=state_dir, kafka_port=free_port(), redis_port=free_port())
    stack = EmbeddedStack.from_settings(stack_settings)
    try:
        stack.up(timeout=30)
        settings = Settings.load(
            kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap),
            redis=RedisSettings(url=stack.redis_url),
            stack=stack_settings,
        )
        yield StackHandle(stack.kafka_bootstrap, stack.redis_url, settings, stack)
    finally:
        stack.down()


@pytest.fixture
def kafka_settings(embedded_stack: StackHandle) -> KafkaSettings:
    """Kafka settings pointing at the session broker (consumer-group tuning included)."""
    return embedded_stack.settings.kafka


@pytest.fixture
def redis_client(embedded_stack: StackHandle) -> Iterator[object]:
    """A sync ``redis.Redis`` on the session server, its database flushed before the test."""
    import redis

    redis_settings = embedded_stack.settings.redis
    client = redis.Redis.from_url(redis_settings.url, **redis_settings.client_kwargs())
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def make_topic(kafka_settings: KafkaSettings, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``make_topic(partitions=1, prefix=None) -> name`` creates a uniquely named, ready topic."""
    from segstream.streams.topics import ensure_topics, wait_for_topics

    base = request.node.name.split("[")[0].replace("_", "-")[:40]

    def make(partitions: int = 1, prefix: str | None = None) -> str:
        name = f"{prefix or base}-{uuid.uuid4().hex[:8]}"
        ensure_topics(kafka_settings, [name], partitions=partitions)
        wait_for_topics(kafka_settings, [name], timeout=10)
        return name

    return make


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A session-wide 3-master / 3-replica Redis Cluster on loopback (a ``RedisClusterHandle``)."""
    from segstream.embedded.redis_cluster import start_redis_cluster

    handle = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield handle
    finally:
        handle.stop()
