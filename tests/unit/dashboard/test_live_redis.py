"""The read-only Redis side: no write command is reachable, and the stored hash rebuilds the fold exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.dashboard.live_redis import ReadOnlyRedis, state_from_hash
from segstream.models.customer_state import CustomerState
from segstream.models.features import NO_TIMESTAMP

DAY = 86_400_000


def test_the_wrapper_offers_read_commands_only():
    public = {name for name in dir(ReadOnlyRedis) if not name.startswith("_")}
    assert public == {"ping", "get", "get_many", "hgetall", "hgetall_many", "hget_many", "lrange", "scan", "close"}


def _stored_hash(state: CustomerState) -> dict[str, str]:
    """The customer hash as the worker's APPLY script leaves it (layout v2, see streams/state/lua.py)."""
    raw = {"ft": state.first_ts, "lt": state.last_ts, "p": state.purchases, "g": state.gross_cents,
           "n": state.net_cents, "r": state.returns, "rc": state.returns_cents, "sg": 2, "sv": "v1"}  # fmt: skip
    if state.first_purchase_ts != NO_TIMESTAMP:
        raw |= {"fp": state.first_purchase_ts, "lp": state.last_purchase_ts}
    for day, (cents, count) in state.days.items():
        raw[f"d:{day}"] = cents
        if count:
            raw[f"q:{day}"] = count
    return {k: str(v) for k, v in raw.items()}


events = st.lists(st.tuples(st.integers(0, 800 * DAY), st.integers(-50_000, 200_000)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(0, 400))
def test_state_from_hash_gives_the_same_aggregates_as_the_fold(evs, days_after):
    state = CustomerState()
    for i, (ts, cents) in enumerate(evs):
        state.add(f"e{i}", ts, cents)
    rebuilt = state_from_hash(_stored_hash(state))
    as_of = state.last_ts + days_after * DAY
    assert rebuilt.aggregates(as_of) == state.aggregates(as_of)
