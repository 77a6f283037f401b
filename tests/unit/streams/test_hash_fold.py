"""The worker-side fold of a stored customer hash equals the reference fold, batch after batch."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from segstream.models.customer_state import CustomerState
from segstream.models.features import AGGREGATE_FIELDS, DAY_MS
from segstream.streams.state.hash_fold import FoldCache, fold, fold_hash, parse_hash

DAY0 = 20_000 * DAY_MS
# Offsets that put events on the window edges (30, 90, 365 days) and the retention horizon exactly.
EDGE_DAYS = (0, 1, 29, 30, 31, 89, 90, 91, 364, 365, 366, 400, 730, 731)

batches = st.lists(
    st.lists(
        st.tuples(
            st.builds(lambda d, ms: DAY0 + d * DAY_MS + ms, st.sampled_from(EDGE_DAYS), st.integers(0, DAY_MS - 1)),
            st.integers(-20_000, 90_000),
        ),
        max_size=6,
    ),
    min_size=1,
    max_size=12,
)


def _redis_apply(stored: dict[bytes, bytes], writes: list, deletes: list[bytes]) -> None:
    """What HSET and HDEL do to the hash (Redis stores every value as its decimal string)."""
    for i in range(0, len(writes), 2):
        stored[str(writes[i]).encode()] = str(writes[i + 1]).encode()
    for name in deletes:
        stored.pop(name, None)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(batches=batches, lag_days=st.integers(0, 400))
# a late event on a day already past the horizon, then one that moves the horizon over a stored day
@example(batches=[[(DAY0 + 731 * DAY_MS, 500)], [(DAY0, 700)], [(DAY0 + 366 * DAY_MS, -300)]], lag_days=0)
def test_fold_hash_equals_the_reference_fold(batches, lag_days):
    stored: dict[bytes, bytes] = {b"sg": b"2", b"wd": b"1", b"w3": b"9"}  # a segment record, the old Lua cache
    state = CustomerState()
    cached = parse_hash(stored)  # what the worker keeps between batches instead of reading the hash again
    as_of = 0
    for i, batch in enumerate(batches):
        for j, (ts, cents) in enumerate(batch):
            state.add(f"{i}-{j}", ts, cents)
        # the batch's as-of time is at or after its events (the watermark), sometimes days later
        as_of = max([as_of, *(ts for ts, _ in batch)]) + (lag_days * DAY_MS if i % 3 == 2 else 0)
        folded = fold_hash(stored, batch, as_of)
        from_cache = fold(cached, batch, as_of)
        _redis_apply(stored, folded.writes, folded.deletes)
        # folding the kept state writes the same and leaves exactly what reading the hash again would give
        assert from_cache.row == folded.row and from_cache.expected == folded.expected
        assert dict(zip(from_cache.writes[::2], from_cache.writes[1::2])) == dict(
            zip(folded.writes[::2], folded.writes[1::2])
        )
        assert sorted(from_cache.deletes) == sorted(folded.deletes)
        assert from_cache.state == parse_hash(stored) == folded.state
        cached = from_cache.state
        if state.is_empty:
            assert not folded.writes
            continue
        assert dict(zip(AGGREGATE_FIELDS, folded.row, strict=True)) == state.aggregates(as_of)
        assert stored[b"sg"] == b"2"  # the fold leaves the segment record alone
        days: dict[int, list[int]] = {}
        for name, value in stored.items():
            kind, _, day = name.decode().partition(":")
            if day:
                days.setdefault(int(day), [0, 0])["dq".index(kind)] = int(value)
        assert days == state.days
        assert int(stored[b"p"]) == state.purchases and int(stored[b"lt"]) == state.last_ts
        assert b"wd" not in stored and b"w3" not in stored  # the Lua cache goes on the first write


def test_expected_names_what_was_read_and_nothing_is_written_without_events():
    stored = {b"lt": str(DAY0).encode(), b"ft": str(DAY0).encode(), b"p": b"3", b"r": b"1", b"d:20000": b"10"}
    folded = fold_hash(stored, [], DAY0)
    assert folded.expected == ("3", "1") and folded.writes == [] and folded.deletes == []
    assert fold_hash({}, [(DAY0, 100)], DAY0).expected == ("", "")


def test_the_cache_keeps_the_most_recently_used_and_forgets_on_drop():
    cache = FoldCache(2)
    a, b, c = (parse_hash({b"lt": str(DAY0 + i).encode(), b"p": b"1"}) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now the most recently used
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c and len(cache) == 2
    cache.drop("a")
    assert cache.get("a") is None
    off = FoldCache(0)
    off.put("a", a)
    assert off.get("a") is None and len(off) == 0
