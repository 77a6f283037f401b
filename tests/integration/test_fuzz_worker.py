"""Hostile input through the real worker: every bad message reaches ``dead-letters`` with a reason, every good
one is scored, and the worker never dies.

The corpus is drawn by hypothesis (``@given`` with a bounded number of examples, seeded with
``derandomize=True`` and no example database; hypothesis's own heuristics can still vary it slightly between
runs) from families of payloads: random bytes, wrong types, missing and extra fields, extreme numbers, far-future and
far-past timestamps, unicode ids, oversized and deeply nested messages, empty (tombstone) values. Which
messages are "good" is decided by the event contract itself (:func:`segstream.models.events.parse_event`);
families that are bad by construction are checked to be classified bad, so the oracle is not vacuous. The
whole corpus is produced at once, followed by a plain batch of valid events, and the worker must drain it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.models.contract import DEFAULT_MAX_TIMESTAMP_MS as MAX_TIMESTAMP_MS
from segstream.models.contract import DEFAULT_MIN_TIMESTAMP_MS as MIN_TIMESTAMP_MS
from segstream.models.errors import EventValidationError
from segstream.models.events import (
    MAX_EVENT_BYTES,
    check_not_ahead,
    parse_event,
)
from segstream.settings import WorkerSettings
from segstream.streams.outputs import MAX_DEAD_LETTER_RAW
from tests.integration.conftest import StackHandle
from tests.integration.faults_support import (
    Dataset,
    WorkerConfig,
    WorkerProcess,
    build_dataset,
    done_count,
    produce_raw,
    read_topic,
    redis_sync,
    wait_until,
)

PER_FAMILY = 40  # at least this many good events, and three times as many bad ones
TS = 1_735_000_000_000  # inside the accepted range
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
plain_id = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


def _valid(i: int, **fields: Any) -> dict[str, Any]:
    event = {"event_id": f"fz-{i}", "customer_id": f"FZ{i % 50:03d}", "timestamp": TS + i * 1000, "amount": 10.5}
    event.update(fields)
    return event


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


FAMILIES = ("random-bytes", "wrong-type", "missing-field", "extra-fields", "extreme-numbers", "timestamps",
            "unicode-ids")  # fmt: skip
WRONG_TYPES = st.sampled_from([True, [], {}, [1], {"a": 1}, "12.5", 3.5]) | json_value
AMOUNTS = st.sampled_from([1e9, -1e9, 1e9 + 1, 1e308, -1e308, 5e-324, -0.0, 0.005, 10**30, -(10**400),
                           float("nan"), float("inf")]) | st.floats() | st.integers()  # fmt: skip
TIMESTAMPS = (
    st.sampled_from([0, -1, MIN_TIMESTAMP_MS - 1, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1, MAX_TIMESTAMP_MS, 2**63,
                     -(2**63), 1.5e12, 1_700_000_000, "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00",
                     "2025-01-01T00:00:00", "2025-01-01T00:00:00Z", "2025-13-01T00:00:00+00:00",
                     "1999-12-31T23:59:59.999+00:00"])
    | st.integers(MIN_TIMESTAMP_MS - 10**12, MAX_TIMESTAMP_MS + 10**12)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.floats()
)  # fmt: skip


@st.composite
def message(draw: st.DrawFn, i: int) -> tuple[str, bytes | None, bytes | None]:
    """One (family, key, value); ``i`` makes the event id unique across the corpus."""
    family = draw(st.sampled_from(FAMILIES))
    if family == "random-bytes":
        return family, b"k", draw(st.binary(max_size=400))
    if family == "wrong-type":
        field = draw(st.sampled_from(["event_id", "customer_id", "timestamp", "amount", "quantity", "currency",
                                      "channel", "store_id", "category"]))  # fmt: skip
        return family, b"k", _dump(_valid(i, **{field: draw(WRONG_TYPES)}))
    if family == "missing-field":
        event = _valid(i)
        for name in draw(st.sets(st.sampled_from(["event_id", "customer_id", "timestamp", "amount"]), min_size=1)):
            del event[name]
        return family, b"k", _dump(event)
    if family == "extra-fields":
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=12), json_value, min_size=1, max_size=6))
        return family, b"k", _dump({**extra, **_valid(i)})
    if family == "extreme-numbers":
        quantity = draw(st.none() | st.integers() | st.floats())
        return family, b"k", _dump(_valid(i, amount=draw(AMOUNTS), quantity=quantity))
    if family == "timestamps":
        return family, b"k", _dump(_valid(i, timestamp=draw(TIMESTAMPS)))
    cid = draw(st.text(min_size=1, max_size=130))
    eid = draw(st.text(min_size=1, max_size=100))
    key = cid.encode("utf-8", "surrogatepass")
    return family, key, _dump(_valid(i, customer_id=cid, event_id=f"{eid}-{i}"))


def _fixed_cases(start: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """Cases hypothesis would rarely build: sizes around the limits, deep nesting, empty values."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    n = iter(range(start, start + 1000))
    for size in (MAX_EVENT_BYTES - 200, MAX_EVENT_BYTES + 1, 200_000, 900_000):
        i = next(n)
        pad = max(0, size - len(_dump(_valid(i, pad=""))))
        out.append(("oversized", b"k", _dump(_valid(i, pad="x" * pad))))
    for depth in (50, 500, *range(900, 1000, 5), 30_000):  # around the parse/serialise recursion limits
        i = next(n)
        out.append(("deep-nesting", b"k", _dump(_valid(i))[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"))
    out += [("tombstone", b"k", None), ("tombstone", b"k", b"")]
    return out


def _drawn_corpus(examples: int = 400) -> list[tuple[str, bytes | None, bytes | None]]:
    """``examples`` messages drawn by hypothesis (deterministic: derandomized, no database), plus fixed cases."""
    found: list[tuple[str, bytes | None, bytes | None]] = []

    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def draw_one(data: st.DataObject) -> None:
        found.append(data.draw(message(len(found))))

    draw_one()
    return found + _fixed_cases(len(found))


_SKEW_MS = int(WorkerSettings().max_future_skew_s * 1000)  # the worker under test has the same environment


def _classify(value: bytes | None) -> tuple[bool, tuple[str, str] | None]:
    """(good, event_id) by the event contract, which includes the nesting limit, and by the worker's limit on
    how far ahead of its clock an event may be (drawn timestamps reach past 2100; none is near the limit)."""
    try:
        event = check_not_ahead(parse_event(value if value is not None else b""), int(time.time() * 1000), _SKEW_MS)
    except EventValidationError:
        return False, None
    return True, (event.event_id, event.customer_id)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return build_dataset(tmp_path_factory.getbasetemp() / "faults-dataset")


@pytest.fixture
def worker(embedded_stack: StackHandle, dataset: Dataset, tmp_path: Path) -> Iterator[WorkerProcess]:
    config = WorkerConfig(embedded_stack.kafka_bootstrap, embedded_stack.redis_url, dataset.models_root, tmp_path,
                          partitions=2)  # fmt: skip
    config.create_topics()
    proc = WorkerProcess(config)
    yield proc
    proc.stop()


def _raw_of(letter: dict[str, Any]) -> bytes | None:
    if letter["raw_encoding"] == "none":
        return None
    if letter["raw_encoding"] == "base64":
        return base64.b64decode(letter["raw"])
    return str(letter["raw"]).encode("utf-8", errors="surrogatepass")


def _fingerprint(raw: bytes | None) -> str:
    return "none" if raw is None else hashlib.sha256(raw[:MAX_DEAD_LETTER_RAW]).hexdigest()


def test_fuzzed_payloads_dead_letter_or_score_and_the_worker_survives(worker: WorkerProcess) -> None:
    items = _drawn_corpus()
    labelled = [(family, key, value, *_classify(value)) for family, key, value in items]
    # Families that are bad by construction must be bad by the contract (the oracle is not vacuous) ...
    for family in ("random-bytes", "missing-field", "tombstone"):
        assert not any(good for f, _, _, good, _ in labelled if f == family), family
    # ... and the corpus has both kinds.
    good_ids = [eid for *_, good, eid in labelled if good]
    bad = [(family, value) for family, _, value, good, _ in labelled if not good]
    assert len(good_ids) >= PER_FAMILY and len(bad) >= 3 * PER_FAMILY
    assert len(set(good_ids)) == len(good_ids)
    tail = [_valid(10**6 + i) for i in range(200)]  # plain traffic after the junk: must flow as usual
    good_ids += [(e["event_id"], e["customer_id"]) for e in tail]

    worker.start()
    worker.wait_ready()
    config = worker.config
    sent = produce_raw([(k, v) for _, k, v in items] + [(e["customer_id"].encode(), _dump(e)) for e in tail],
                       config.kafka, config.topics["transactions"])  # fmt: skip
    client = redis_sync(config.redis)

    def settled() -> bool:
        assert worker.alive(), f"the worker died:\n{worker.log()[-4000:]}"
        return done_count(client, config.prefix, good_ids) == len(good_ids)

    seconds = wait_until(settled, 120, interval=0.5, what="every good event to be processed")
    letters: list[dict[str, Any]] = []

    def all_dead_lettered() -> bool:
        letters[:] = [json.loads(v) for _, v in read_topic(config.kafka, config.topics["dead_letters"])]
        return len(letters) >= len(bad)

    wait_until(all_dead_lettered, 30, interval=1.0, what=f"{len(bad)} dead letters")
    assert worker.alive() and worker.starts == 1
    assert "unrecoverable" not in worker.log()
    # Every bad message is dead-lettered exactly once (at-least-once allows more after a crash; there was none).
    assert Counter(_fingerprint(_raw_of(x)) for x in letters) == Counter(_fingerprint(v) for _, v in bad)
    assert all(isinstance(x["error"], str) and x["error"] for x in letters)
    assert all(x["topic"] == config.topics["transactions"] and x["offset"] >= 0 for x in letters)
    oversized = [x for x in letters if x["raw_truncated"]]
    assert oversized and all("too large" in x["error"] for x in oversized)
    # Every good one is scored.
    scored = {json.loads(v)["event_id"] for _, v in read_topic(config.kafka, config.topics["scored"])}
    assert {eid for eid, _ in good_ids} <= scored
    reasons = Counter(x["error"].split(":")[0][:40] for x in letters)
    measured = {"sent": sent, "good": len(good_ids), "bad": len(bad), "settled_s": round(seconds, 1),
                "families": Counter(f for f, *_ in items), "top_reasons": reasons.most_common(8)}  # fmt: skip
    print(f"FUZZ-RESULT {json.dumps(measured)}")
