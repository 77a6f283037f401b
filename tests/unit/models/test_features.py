"""The feature core: the fold over events equals a direct pandas recomputation, whatever the order."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.customer_state import (
    AggregateRow,
    CustomerState,
    aggregates_matrix,
    features_of_states,
    fold_events,
)
from segstream.models.features import (
    AGGREGATE_FIELDS,
    DAY_MS,
    FEATURE_NAMES,
    FEATURE_SPEC,
    batch_features,
    features_from_aggregates,
    to_cents,
)

T0 = 1_700_000_000_000  # 2023-11-14

_event = st.tuples(
    st.sampled_from(["A", "B", "C", "D"]),
    st.integers(min_value=0, max_value=800 * DAY_MS),
    st.decimals(min_value=-500, max_value=5000, places=2, allow_nan=False, allow_infinity=False),
)


def _frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "timestamp": pd.to_datetime([r[2] for r in rows], unit="ms", utc=True),
            "amount": [r[3] for r in rows],
        }
    )


@settings(max_examples=150, deadline=None)
@given(events=st.lists(_event, min_size=1, max_size=60), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_fold_with_shuffling_and_duplicates_equals_pandas_recomputation(events, seed, data):
    rows = [(f"e{i}", cid, T0 + off, float(amount)) for i, (cid, off, amount) in enumerate(events)]
    dupes = data.draw(st.lists(st.sampled_from(rows), max_size=10))
    delivered = rows + dupes
    random.Random(seed).shuffle(delivered)

    states = fold_events((eid, cid, ts, to_cents(amount)) for eid, cid, ts, amount in delivered)
    expected = batch_features(_frame(rows))
    as_of = expected.attrs["as_of_ms"]

    customers = sorted(states)
    got = features_of_states([states[c] for c in customers], as_of)
    assert list(expected.index) == customers
    np.testing.assert_array_equal(got, expected.to_numpy())


def test_duplicate_event_id_changes_nothing():
    state = CustomerState()
    assert state.add("e1", T0, 1000)
    before = state.aggregates(T0)
    assert not state.add("e1", T0, 1000)
    assert state.aggregates(T0) == before


def test_hand_computed_features():
    rows = [
        ("e1", "A", T0, 100.0),
        ("e2", "A", T0 + 10 * DAY_MS, 50.0),
        ("e3", "A", T0 + 20 * DAY_MS, -30.0),
        ("e4", "A", T0 + 40 * DAY_MS, 0.0),
    ]
    f = batch_features(_frame(rows)).loc["A"]
    assert f["frequency"] == 3  # the zero-amount purchase counts, the return does not
    assert f["monetary"] == 120.0
    assert f["aov"] == 50.0
    assert f["recency_days"] == 0.0
    assert f["tenure_days"] == 40.0
    assert f["mean_days_between"] == 20.0
    assert f["returns_count"] == 1 and f["returns_amount"] == 30.0
    assert f["spend_30d"] == -30.0  # days 20 and 40 are inside (day(T) - 30, day(T)]
    assert f["purchases_30d"] == 1
    assert f["spend_90d"] == 120.0 and f["purchases_90d"] == 3
    assert f["purchase_rate"] == 3 / 40 * 30
    assert f["clv_historical"] == f["monetary"]
    assert f["clv_12m_predicted"] > 0


def test_cutoff_excludes_later_events_and_recency_grows_with_as_of():
    rows = [("e1", "A", T0, 10.0), ("e2", "A", T0 + 5 * DAY_MS, 10.0)]
    f = batch_features(_frame(rows), as_of=pd.Timestamp(T0 + 2 * DAY_MS, unit="ms", tz="UTC")).loc["A"]
    assert f["frequency"] == 1 and f["recency_days"] == 2.0
    later = batch_features(_frame(rows), as_of=pd.Timestamp(T0 + 100 * DAY_MS, unit="ms", tz="UTC")).loc["A"]
    assert later["recency_days"] == 95.0 and later["spend_30d"] == 0.0


def test_customer_with_only_returns_has_finite_features():
    f = batch_features(_frame([("e1", "A", T0, -20.0)])).loc["A"]
    assert f["frequency"] == 0 and f["aov"] == 0 and f["clv_12m_predicted"] == 0
    assert np.isfinite(f.to_numpy()).all()


def test_old_buckets_are_pruned_without_changing_features():
    state = CustomerState()
    for i in range(0, 1000, 7):
        state.add(f"e{i}", T0 + i * DAY_MS, 100)
    assert len(state.days) <= 366 // 7 + 1
    as_of = T0 + 1000 * DAY_MS
    rows = [(f"e{i}", "A", T0 + i * DAY_MS, 1.0) for i in range(0, 1000, 7)]
    expected = batch_features(_frame(rows), as_of=pd.Timestamp(as_of, unit="ms", tz="UTC"))
    np.testing.assert_array_equal(features_of_states([state], as_of), expected.to_numpy())


def test_spec_is_pinned():
    # Golden: a change to names, order, windows or constants must be a deliberate new version.
    assert FEATURE_SPEC.names == FEATURE_NAMES
    assert len(FEATURE_NAMES) == 17
    assert FEATURE_SPEC.version == 1
    assert FEATURE_SPEC.to_dict()["hash"] == GOLDEN_HASH


def test_features_broadcast_scalar_as_of():
    agg = {name: np.zeros(3, dtype=np.int64) for name in AGGREGATE_FIELDS}
    assert features_from_aggregates(agg, 0).shape == (3, len(FEATURE_NAMES))


GOLDEN_HASH = "9b9c162a1a76e267e56e8c5b328cc69a084e816401f2a7bcd70e671bedf83ddc"


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-(2**53), 2**53), min_size=len(AGGREGATE_FIELDS),
                              max_size=len(AGGREGATE_FIELDS)), max_size=8))
def test_aggregate_rows_read_and_stack_like_dicts(rows):
    plain = [dict(zip(AGGREGATE_FIELDS, row, strict=True)) for row in rows]
    wrapped = [AggregateRow(row) for row in rows]
    assert wrapped == plain and [dict(w) for w in wrapped] == plain
    stacked, expected = aggregates_matrix(wrapped), aggregates_matrix(plain)
    assert set(stacked) == set(expected) == set(AGGREGATE_FIELDS)
    for name in AGGREGATE_FIELDS:
        assert stacked[name].dtype == np.int64 and np.array_equal(stacked[name], expected[name])


def test_aggregate_row_needs_every_field():
    import pytest

    with pytest.raises(ValueError, match="aggregate values"):
        AggregateRow([1, 2, 3])
