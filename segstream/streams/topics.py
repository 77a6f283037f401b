"""Create the pipeline's topics through the Kafka admin API, idempotently.

Works against Apache Kafka and the embedded Tansu broker alike (Tansu 0.6.0 supports CreateTopics; it
answers error 36 TopicAlreadyExists for existing names, which is treated as success here). Tansu keeps
topics in memory, so they must be created again after every broker restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from segstream.models.errors import SegstreamError

if TYPE_CHECKING:
    from segstream.settings import KafkaSettings, TopicSettings


class TopicError(SegstreamError):
    """Topics could not be created or did not appear (message names the broker and the topics)."""


def _admin(kafka: KafkaSettings, connect_timeout: float) -> Any:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    kwargs = kafka.kafka_python_kwargs()
    # kafka-python >= 3 waits 30 s by default for an unreachable broker; a CLI user wants to know sooner.
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        kwargs["bootstrap_timeout_ms"] = int(connect_timeout * 1000)
    try:
        return KafkaAdminClient(**kwargs)
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc


def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    partitions: int = 4,
    replication_factor: int = 1,
    connect_timeout: float = 10.0,
    compacted: Iterable[str] = (),
) -> list[str]:
    """Create every topic in ``names`` that does not exist yet (those in ``compacted`` with
    ``cleanup.policy=compact``).

    Args:
        kafka: connection settings.
        names: topic names.
        partitions: partition count for new topics (existing topics are left as they are).
        replication_factor: replication factor for new topics (1 for the embedded broker).
        connect_timeout: seconds to wait for an unreachable broker before giving up.

    Returns:
        The names that were created by this call, in the given order.

    Raises:
        TopicError: the broker is unreachable or refused to create a topic.
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    compact = set(compacted)
    admin = _admin(kafka, connect_timeout)
    try:
        existing = set(admin.list_topics())
        created: list[str] = []
        # One request per topic: kafka-python raises for the whole batch if any single topic fails.
        for name in wanted:
            if name in existing:
                continue
            try:
                configs = {"cleanup.policy": "compact"} if name in compact else {}
                admin.create_topics([NewTopic(name, partitions, replication_factor, topic_configs=configs)])
            except TopicAlreadyExistsError:
                continue  # created concurrently by another process: fine
            except KafkaError as exc:
                raise TopicError(f"Kafka at {kafka.bootstrap_servers} refused to create topic {name!r}: {exc}") from exc
            created.append(name)
        return created
    finally:
        admin.close()


def create_topics(
    kafka: KafkaSettings, topics: TopicSettings, partitions: int | None = None, connect_timeout: float = 10.0
) -> list[str]:
    """Create all topics named in ``topics`` (idempotent).

    Args:
        kafka: connection settings.
        topics: topic names, default partitions and replication factor.
        partitions: overrides ``topics.partitions`` for topics created now.
        connect_timeout: seconds to wait for an unreachable broker before giving up.

    Returns:
        The names created by this call (empty when all existed).

    Raises:
        TopicError: the broker is unreachable or refused a topic.
    """
    count = partitions if partitions is not None else topics.partitions
    if count < 1:
        raise TopicError(f"partitions must be >= 1, got {count}")
    return ensure_topics(kafka, topics.names(), count, topics.replication_factor, connect_timeout,
                         compacted=topics.compacted())  # fmt: skip


def wait_for_topics(kafka: KafkaSettings, names: Iterable[str], timeout: float = 10.0) -> dict[str, int]:
    """Wait until every topic exists with all partitions led by a broker.

    Returns:
        Partition count per topic.

    Raises:
        TopicError: some topics are still missing after ``timeout`` seconds (they are named).
    """
    wanted = list(dict.fromkeys(names))
    deadline = time.monotonic() + timeout
    admin = _admin(kafka, timeout)
    try:
        while True:
            ready: dict[str, int] = {}
            present = set(admin.list_topics())
            if all(name in present for name in wanted):
                for desc in admin.describe_topics(wanted):
                    parts = desc.get("partitions") or []
                    if desc.get("error_code", 0) == 0 and parts and all(p["leader_id"] >= 0 for p in parts):
                        ready[desc["name"]] = len(parts)
            missing = [name for name in wanted if name not in ready]
            if not missing:
                return ready
            if time.monotonic() >= deadline:
                raise TopicError(
                    f"topics not ready on {kafka.bootstrap_servers} after {timeout:.0f}s: {', '.join(missing)}"
                )
            time.sleep(0.1)
    finally:
        admin.close()
