"""The naive baseline: its per-event fold equals the shared core's fold, duplicates are skipped."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segstream.bench.baseline import NaiveProcessor, state_from_hash, state_to_hash
from segstream.models.customer_state import CustomerState, fold_events

DAY = 86_400_000
T0 = 1_735_689_600_000


class DictRedis:
    """Just the commands the naive path uses, with redis-py's bytes replies (a unit-test stand-in)."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.calls = 0

    @staticmethod
    def _b(value: object) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: object, nx: bool = False, ex: int | None = None) -> bool | None:
        self.calls += 1
        if nx and key in self.data:
            return None
        self.data[key] = self._b(value)
        return True

    async def get(self, key: str) -> bytes | None:
        self.calls += 1
        return self.data.get(key)  # type: ignore[return-value]

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        self.calls += 1
        return dict(self.data.get(key, {}))  # type: ignore[call-overload]

    async def hget(self, key: str, field: str) -> bytes | None:
        self.calls += 1
        return self.data.get(key, {}).get(field.encode())  # type: ignore[union-attr]

    async def hset(self, key: str, field: str | None = None, value: object = None,
                   mapping: dict[str, object] | None = None) -> int:  # fmt: skip
        self.calls += 1
        h = self.data.setdefault(key, {})
        items = dict(mapping or {})
        if field is not None:
            items[field] = value
        for k, v in items.items():
            h[k.encode()] = self._b(v)  # type: ignore[index]
        return len(items)


class FixedModel:
    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.rows: list[np.ndarray] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.rows.append(x)
        return np.array([self.segment])


def _message(event_id: str, customer: str, ts: int, amount: float) -> bytes:
    return json.dumps({"event_id": event_id, "customer_id": customer, "timestamp": ts, "amount": amount}).encode()


def test_naive_fold_matches_the_core_and_skips_duplicates():
    redis, model, sent = DictRedis(), FixedModel(3), []

    async def send(kind: str, key: bytes, value: bytes) -> None:
        sent.append((kind, key, json.loads(value)))

    proc = NaiveProcessor(redis, "p", model, send)
    events = [("e1", "c1", T0, 10.0), ("e2", "c1", T0 + 3 * DAY, -4.5), ("e3", "c2", T0 + DAY, 7.25),
              ("e4", "c1", T0 + 400 * DAY, 1.0)]  # fmt: skip
    outcomes = [asyncio.run(proc.process(_message(*e))) for e in [*events, events[0]]]
    assert outcomes == ["scored"] * 4 + ["duplicate"]
    assert asyncio.run(proc.process(b"{not json")) == "dead"
    expected = fold_events((eid, cid, ts, round(amount * 100)) for eid, cid, ts, amount in events)
    for cid, state in expected.items():
        stored = state_from_hash(redis.data[f"p:c:{cid}"])  # type: ignore[arg-type]
        assert stored.aggregates(T0 + 400 * DAY) == state.aggregates(T0 + 400 * DAY)
        assert redis.data[f"p:c:{cid}"][b"segment"] == b"3"  # type: ignore[index]
    assert redis.data["p:wm"] == str(T0 + 400 * DAY).encode()
    scored = [s for s in sent if s[0] == "scored"]
    assert [s[2]["event_id"] for s in scored] == ["e1", "e2", "e3", "e4"]
    assert all(s[2]["segment"] == 3 for s in scored)
    assert [s[2]["customer_id"] for s in sent if s[0] == "changes"] == ["c1", "c2"]  # first score only


def test_naive_path_makes_several_awaited_calls_per_event():
    redis = DictRedis()

    async def send(*_: object) -> None:
        pass

    asyncio.run(NaiveProcessor(redis, "p", FixedModel(0), send).process(_message("e1", "c1", T0, 1.0)))
    assert redis.calls == 7


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(-10_000, 10_000)), min_size=1, max_size=30))
def test_state_hash_round_trip(events):
    state = CustomerState()
    for i, (day, cents) in enumerate(events):
        state.add(f"e{i}", T0 + day * DAY, cents)
    raw = {k.encode(): v.encode() for k, v in state_to_hash(state).items()}
    back = state_from_hash(raw)
    assert back.aggregates(state.last_ts) == state.aggregates(state.last_ts)
    assert back.days == state.days


def test_empty_hash_is_an_empty_state():
    assert state_from_hash({}).is_empty
