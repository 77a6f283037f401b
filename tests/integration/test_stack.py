"""The embedded stack, topic creation and the Kafka client settings against the real Tansu + Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.embedded import EmbeddedStack, PortInUseError
from segstream.settings import TopicSettings
from segstream.streams.topics import create_topics, wait_for_topics
from tests.integration.conftest import free_port


@pytest.fixture
def own_stack(tmp_path):
    """A second, private stack for tests that start and stop things."""
    stack = EmbeddedStack(tmp_path / "stack", kafka_port=free_port(), redis_port=free_port())
    yield stack
    stack.down()


@pytest.fixture
def session_stack(embedded_stack):
    if embedded_stack.stack is None:
        pytest.skip("SEGSTREAM_TEST_USE_RUNNING=1: the stack is not ours to restart")
    return embedded_stack.stack


def test_session_stack_answers(embedded_stack):
    if embedded_stack.stack is None:
        pytest.skip("using running services")
    status = embedded_stack.stack.status()
    for name in ("kafka", "redis"):
        assert status[name]["running"] and status[name]["answering"], status
        assert isinstance(status[name]["pid"], int)
    assert status["kafka"]["bootstrap"] == embedded_stack.kafka_bootstrap


def test_up_status_down_are_idempotent_and_stale_pids_are_cleared(own_stack):
    assert own_stack.down() == {"kafka": "not running", "redis": "not running"}
    assert own_stack.up(timeout=20) == {"redis": "started", "kafka": "started"}
    assert own_stack.up(timeout=20) == {"redis": "already running", "kafka": "already running"}
    status = own_stack.status()
    assert status["kafka"]["answering"] and status["redis"]["answering"]
    assert own_stack.down() == {"kafka": "stopped", "redis": "stopped"}
    assert own_stack.down() == {"kafka": "not running", "redis": "not running"}
    after = own_stack.status()
    assert not after["kafka"]["running"] and not after["redis"]["answering"]

    # A pid file left by a crashed run, pointing at a process that no longer exists.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (own_stack.state_dir / "kafka.pid").write_text(f"{dead.pid}\n")
    assert own_stack.status()["kafka"]["pid"] is None
    assert not (own_stack.state_dir / "kafka.pid").exists()
    assert own_stack.up(timeout=20)["kafka"] == "started"


def test_up_refuses_a_port_taken_by_someone_else(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = EmbeddedStack(tmp_path / "s", kafka_port=free_port(), redis_port=port)
        with pytest.raises(PortInUseError, match=str(port)):
            stack.up(timeout=10)
        assert not stack.status()["redis"]["running"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_redis_aof_keeps_writes_across_restart(session_stack, redis_client, sig):
    redis_client.set("aof:key", "kept")
    redis_client.hset("aof:hash", mapping={"a": "1", "b": "2"})
    session_stack.restart_redis(sig)
    import redis

    fresh = redis.Redis.from_url(session_stack.redis_url)
    assert fresh.get("aof:key") == b"kept"
    assert fresh.hgetall("aof:hash") == {b"a": b"1", b"b": b"2"}
    fresh.close()


def test_produce_consume_round_trip(kafka_settings, make_topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = make_topic(partitions=2)
    sent = [(f"c{i % 7}".encode(), json.dumps({"i": i}).encode()) for i in range(2000)]
    producer = KafkaProducer(**kafka_settings.kafka_python_kwargs(), linger_ms=5)
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(**kafka_settings.kafka_python_kwargs(), auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            got.extend((r.key, r.value) for r in records)
    consumer.close()
    assert sorted(got) == sorted(sent)
    # Same key -> same partition -> per-key order preserved.
    for key in {k for k, _ in sent}:
        assert [v for k, v in got if k == key] == [v for k, v in sent if k == key]


def test_create_topics_is_idempotent(kafka_settings):
    prefix = f"idem-{time.monotonic_ns()}"
    topics = TopicSettings(**{f: f"{prefix}-{f}" for f in ("transactions", "scored", "segment_changes")})
    first = create_topics(kafka_settings, topics, partitions=3)
    assert set(first) >= {f"{prefix}-transactions", f"{prefix}-scored", f"{prefix}-segment_changes"}
    assert create_topics(kafka_settings, topics, partitions=3) == []
    ready = wait_for_topics(kafka_settings, [f"{prefix}-transactions", f"{prefix}-scored"])
    assert ready == {f"{prefix}-transactions": 3, f"{prefix}-scored": 3}


def test_kafka_python_group_join_is_fast_with_consumer_group_kwargs(kafka_settings, make_topic):
    from kafka import KafkaConsumer, KafkaProducer

    topic = make_topic(partitions=2)
    producer = KafkaProducer(**kafka_settings.kafka_python_kwargs())
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    started = time.monotonic()
    consumer = KafkaConsumer(
        topic,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        **kafka_settings.kafka_python_kwargs(),
        **kafka_settings.consumer_group_kwargs("kafka-python"),
    )
    values = []
    while not values and time.monotonic() - started < 15:
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(r.value for r in records)
    elapsed = time.monotonic() - started
    consumer.commit()
    consumer.close()
    assert values == [b"hello"]
    assert elapsed < 15


def test_aiokafka_group_join_is_fast_with_consumer_group_kwargs(kafka_settings, make_topic):
    from aiokafka import AIOKafkaConsumer

    topic = make_topic(partitions=2)

    async def join() -> float:
        started = time.monotonic()
        consumer = AIOKafkaConsumer(
            topic,
            group_id=f"ag-{topic}",
            **kafka_settings.aiokafka_kwargs(),
            **kafka_settings.consumer_group_kwargs("aiokafka"),
        )
        await consumer.start()
        try:
            while not consumer.assignment() and time.monotonic() - started < 15:
                await consumer.getmany(timeout_ms=200)
            assert len(consumer.assignment()) == 2
        finally:
            await consumer.stop()
        return time.monotonic() - started

    assert asyncio.run(join()) < 15


def test_cli_stack_up_status_down(tmp_path, monkeypatch):
    kafka_port, redis_port = free_port(), free_port()
    monkeypatch.setenv("SEGSTREAM_STACK_STATE_DIR", str(tmp_path / "cli-stack"))
    monkeypatch.setenv("SEGSTREAM_STACK_KAFKA_PORT", str(kafka_port))
    monkeypatch.setenv("SEGSTREAM_STACK_REDIS_PORT", str(redis_port))
    runner = CliRunner()
    try:
        up = runner.invoke(cli, ["stack", "up", "--json"])
        assert up.exit_code == 0, up.output
        result = json.loads(up.output)
        assert result["kafka"] == "started" and result["redis"] == "started"
        assert "transactions" in result["topics_created"]
        again = runner.invoke(cli, ["stack", "up"])
        assert again.exit_code == 0 and "already running" in again.output
        assert "none (all existed)" in again.output
        status = json.loads(runner.invoke(cli, ["stack", "status", "--json"]).output)
        assert status["kafka"]["port"] == kafka_port and status["redis"]["answering"]
        monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{kafka_port}")
        created = runner.invoke(cli, ["topics", "create", "--partitions", "2"])
        assert created.exit_code == 0 and "created: none" in created.output
    finally:
        down = runner.invoke(cli, ["stack", "down"])
    assert down.exit_code == 0 and "kafka: stopped" in down.output
