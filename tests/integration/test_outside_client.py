"""An outside client on the wire: confluent-kafka (librdkafka), not the project's own Kafka code, produces
``transactions`` to the session broker and reads back what a live worker writes to ``transactions.scored``
and ``segment-changes``. Checks the event contract as a third-party producer and consumer see it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from segstream.streams.replay import records_from_frame
from tests.integration.worker_support import WorkerEnv, stop, trained

confluent_kafka = pytest.importorskip("confluent_kafka")

CUSTOMERS = 6  # customers taken from the trained history
WAIT_S = 60.0  # bound on reading everything back once produced
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.fixture(scope="module")
def live(embedded_stack, tmp_path_factory):
    # Same arguments as test_worker_e2e, so a full session trains this bundle once.
    events, models_root = trained(tmp_path_factory.getbasetemp() / "trained", customers=800, seed=3)
    if embedded_stack.settings.kafka.uses_sasl or embedded_stack.settings.kafka.uses_ssl:
        pytest.skip("the outside-client test speaks PLAINTEXT only")
    env = WorkerEnv(embedded_stack, models_root, tmp_path_factory.mktemp("outside-client"))
    env.create_topics(partitions=2)
    proc = env.start_worker()
    env.wait_http(proc)
    yield env, proc, events
    stop(proc)


def outside_events(events, tag: str) -> list[dict]:
    """Whole histories of a few customers, renamed so they are new to the worker; every other event's
    timestamp is ISO 8601 with a +02:00 offset instead of epoch milliseconds."""
    chosen = sorted(events["customer_id"].unique())[:CUSTOMERS]
    records = records_from_frame(events[events["customer_id"].isin(chosen)])
    out = []
    for i, rec in enumerate(records):
        rec = {**rec, "event_id": f"oc-{tag}-{rec['event_id']}", "customer_id": f"OC-{tag}-{rec['customer_id']}"}
        if i % 2:
            when = datetime.fromtimestamp(rec["timestamp"] / 1000, tz=UTC).astimezone(PLUS_TWO)
            rec["timestamp"] = when.isoformat(timespec="milliseconds")
        out.append(rec)
    return out


def produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    # murmur2_random: the Java/aiokafka partitioner, so a customer lands where the project's producers put it.
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                                         "enable.idempotence": False, "linger.ms": 5})  # fmt: skip
    for rec in records:
        producer.produce(topic, key=rec["customer_id"].encode(), value=json.dumps(rec).encode(), on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0, f"{left} messages not delivered"
    assert not errors, errors[:5]


def consume_until(bootstrap: str, env: WorkerEnv, proc, event_ids: set[str], customers: set[str]):
    """(scored, changes) as (key, value) pairs, read until every event is scored and every customer has a
    first change, or WAIT_S passes."""
    scored_topic, changes_topic = env.topics["scored"], env.topics["segment_changes"]
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"outside-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,  # Tansu answers JoinGroup only after half the session timeout
        "heartbeat.interval.ms": 1000,
    })  # fmt: skip
    scored: list[tuple[bytes | None, dict]] = []
    changes: list[tuple[bytes | None, dict]] = []
    seen: set[str] = set()
    firsts: set[str] = set()
    try:
        consumer.subscribe([scored_topic, changes_topic])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not (event_ids <= seen and customers <= firsts):
            if proc.poll() is not None:
                raise AssertionError(f"worker exited ({proc.returncode}):\n{env.log_text()[-3000:]}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    raise AssertionError(f"consumer error: {msg.error()}")
                value = json.loads(msg.value())
                if msg.topic() == scored_topic:
                    scored.append((msg.key(), value))
                    seen.add(value["event_id"])
                else:
                    changes.append((msg.key(), value))
                    if value["previous_segment"] is None:
                        firsts.add(value["customer_id"])
    finally:
        consumer.close()
    missing = event_ids - seen
    assert not missing, (f"{len(missing)} of {len(event_ids)} events not scored within {WAIT_S}s, e.g. "
                         f"{sorted(missing)[:5]}:\n{env.log_text()[-3000:]}")  # fmt: skip
    assert customers <= firsts, f"no first change for {sorted(customers - firsts)}"
    return scored, changes


def test_confluent_kafka_round_trip(live):
    env, proc, events = live
    tag = uuid.uuid4().hex[:6]
    records = outside_events(events, tag)
    by_id = {r["event_id"]: r for r in records}
    customers = {r["customer_id"] for r in records}
    assert len(by_id) == len(records) and len(customers) == CUSTOMERS
    assert any(isinstance(r["timestamp"], str) for r in records) and any(isinstance(r["timestamp"], int)
                                                                        for r in records)  # fmt: skip

    bootstrap = env.stack.kafka_bootstrap
    produce(bootstrap, env.topics["transactions"], records)
    scored, changes = consume_until(bootstrap, env, proc, set(by_id), customers)

    # transactions.scored: each event once, unchanged input fields plus the four scoring fields, keyed by customer.
    ours = [(k, v) for k, v in scored if v["event_id"] in by_id]
    assert sorted(v["event_id"] for _, v in ours) == sorted(by_id)
    versions = set()
    for key, value in ours:
        sent = by_id[value["event_id"]]
        assert key == sent["customer_id"].encode()
        assert {k: value[k] for k in sent} == sent
        assert {"segment", "segment_name", "model_version", "scored_at"} <= set(value)
        assert isinstance(value["segment"], int) and value["segment_name"] and value["model_version"]
        datetime.fromisoformat(value["scored_at"])
        versions.add(value["model_version"])
    assert len(versions) == 1

    # segment-changes: every customer is new, so its first scored event emits a change from None.
    ours_changes = [(k, v) for k, v in changes if v["customer_id"] in customers]
    fields = {"customer_id", "previous_segment", "segment", "model_version", "event_time", "cause", "event_id"}
    for key, change in ours_changes:
        assert fields <= set(change)
        assert key == change["customer_id"].encode()
        assert change["model_version"] in versions
        assert change["cause"] in ("purchase", "inactivity")
        assert change["previous_segment"] != change["segment"]
        datetime.fromisoformat(change["event_time"])
        if change["cause"] == "purchase":
            assert by_id[change["event_id"]]["customer_id"] == change["customer_id"]
    for cid in customers:
        first = [c for _, c in ours_changes if c["customer_id"] == cid and c["previous_segment"] is None]
        assert len(first) == 1, (cid, first)
        assert first[0]["cause"] == "purchase" and first[0]["event_id"] in by_id
        scored_segments = {v["segment"] for _, v in ours if v["event_id"] == first[0]["event_id"]}
        assert scored_segments == {first[0]["segment"]}
