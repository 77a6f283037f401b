"""The customer-profiles contract and the worker's profile batches, on the in-process store."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segstream.models.contract import REASONS
from segstream.models.errors import EventValidationError
from segstream.models.profiles import encode_profile, parse_profile
from segstream.streams.pipeline import BatchProcessor, PipelineConfig, RawRecord
from segstream.streams.profiles import process_profiles
from segstream.streams.state import MemoryStateStore
from tests.unit.streams.fakes import FakeProducer, holder

scalars = st.none() | st.booleans() | st.text(max_size=20) | st.integers(-10**9, 10**9) | st.floats(-1e9, 1e9)
profiles = st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k != "customer_id"), scalars,
                           max_size=12)  # fmt: skip


@given(profiles)
def test_a_valid_profile_round_trips(attributes):
    parsed = parse_profile(b"C42", encode_profile(attributes))
    assert parsed.customer_id == "C42" and parsed.attributes == attributes


@pytest.mark.parametrize(("key", "value", "code"), [
    (None, b'{"age": 3}', "missing_customer_id"),
    (b"has space", b'{"age": 3}', "invalid_customer_id"),
    (b"C1", b"{not json", "not_json"),
    (b"C1", b"[1, 2]", "not_an_object"),
    (b"C1", b'{"age": [1, 2]}', "invalid_profile"),
    (b"C1", b'{"age": {"years": 3}}', "invalid_profile"),
    (b"C1", b'{"customer_id": "C2", "age": 3}', "invalid_profile"),
    (b"C1", json.dumps({"note": "x" * 129}).encode(), "invalid_profile"),
    (b"C1", json.dumps({f"a{i}": i for i in range(101)}).encode(), "invalid_profile"),
    (b"C1", b"x" * (64 * 1024 + 1), "payload_too_large"),
])  # fmt: skip
def test_a_bad_profile_has_a_reason_a_person_can_act_on(key, value, code):
    with pytest.raises(EventValidationError) as refused:
        parse_profile(key, value)
    assert refused.value.code == code and code in REASONS


def test_a_tombstone_deletes_and_the_key_names_the_customer():
    assert parse_profile(b"C1", None).attributes is None
    assert parse_profile(b"C1", b'{"customer_id": "C1", "age": 3}').attributes == {"age": 3}


def test_a_profile_batch_stores_the_latest_per_customer_and_dead_letters_the_rest():
    async def go():
        store, producer, models = MemoryStateStore(), FakeProducer(), holder()
        proc = BatchProcessor(store, producer, models, PipelineConfig())
        batch = [
            RawRecord(b'{"income": 3.1}', b"C1", "customer-profiles", 0, 1),
            RawRecord(b'{"income": [1]}', b"C2", "customer-profiles", 0, 2),
            RawRecord(b'{"income": 4.5, "owner": "yes"}', b"C1", "customer-profiles", 0, 3),
            RawRecord(b'{"income": 1.0}', b"C3", "customer-profiles", 1, 4),
            RawRecord(None, b"C3", "customer-profiles", 1, 5),
        ]
        result = await process_profiles(batch, store, models, producer, PipelineConfig(), lock=proc.exclusive)
        return result, await store.profiles(["C1", "C2", "C3"]), producer

    result, stored, producer = asyncio.run(go())
    assert stored == {"C1": {"income": 4.5, "owner": "yes"}}  # C3's tombstone came last
    assert (result.stored, result.deleted, result.dead_letters) == (1, 1, 1)
    (dead,) = producer.values("dead-letters")
    assert dead["reason_code"] == "invalid_profile" and dead["topic"] == "customer-profiles" and dead["offset"] == 2
    # A behaviour-only model reads no attributes: nothing is re-scored.
    assert result.rescored == 0 and producer.values("segment-changes") == []


def test_the_customer_view_shows_preferences_from_lines_and_the_profile():
    from segstream.streams.customers import customer_document
    from tests.unit.streams.fakes import event, records

    async def go():
        store, producer, models = MemoryStateStore(), FakeProducer(), holder()
        proc = BatchProcessor(store, producer, models, PipelineConfig())
        lines = [{"category": "Chairs", "amount": 60.0}, {"category": "Binders", "amount": 15.0}]
        await proc.process(records(event("o1", "C1", 0, 75.0, lines=lines), event("o2", "C1", 1, 30.0,
                                                                                  category="Binders"),
                                   event("o3", "C1", 2, -15.0, category="Chairs")))  # fmt: skip
        await store.set_profiles({"C1": {"income": 4.5}})
        return await customer_document(store, "C1", models.active)

    doc = asyncio.run(go())
    assert doc["frequency"] == 2.0  # the order of two categories is one purchase
    prefs = doc["preferences"]
    assert prefs["spend"] == {"Binders": 45.0, "Chairs": 45.0}
    assert prefs["favourite_category"] == "Binders" and prefs["categories_bought"] == 2  # a tie goes by name
    assert prefs["share"] == {"Binders": 0.5, "Chairs": 0.5}
    assert doc["profile"] == {"income": 4.5}


def test_a_dead_lettered_profile_remembers_its_topic_for_the_replay():
    from segstream.streams.dead_letters import decode
    from segstream.streams.outputs import dead_letter_payload

    value = dead_letter_payload(b'{"income": [1]}', "bad", "customer-profiles", 1, 7, b"C2",
                                reason_code="invalid_profile")
    letter = decode(value, 0)
    assert letter is not None and letter.topic == "customer-profiles" and letter.key == b"C2"
    assert letter.raw == b'{"income": [1]}' and letter.replayable
