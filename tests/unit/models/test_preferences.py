"""Product preferences: the split of an event, the fold, the features and the names, as pure functions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segstream.models.customer_state import fold_events
from segstream.models.preferences import (
    LinesError,
    PreferenceSpec,
    batch_categories,
    event_split,
    favourite,
    parse_lines,
    preference_summary,
    top_categories,
)
from segstream.trainer.preferences import dominant_category, with_category

CATEGORIES = ["Chairs", "Binders", "Phones", "Paper", "Art"]
splits = st.lists(st.tuples(st.sampled_from(CATEGORIES), st.integers(-50_000, 200_000)), min_size=0, max_size=4)
events = st.lists(st.tuples(st.integers(0, 5), splits), min_size=1, max_size=40)


def test_lines_are_one_purchase_split_over_categories():
    lines = [{"category": "Chairs", "amount": 731.94}, {"category": "Binders", "amount": 3.54},
             {"category": "Chairs", "amount": 10.0}]  # fmt: skip
    assert parse_lines(lines, 74548) == (("Chairs", 74194), ("Binders", 354))
    assert event_split({"lines": lines, "category": "ignored"}, 74548) == (("Chairs", 74194), ("Binders", 354))
    assert event_split({"category": "Paper"}, 1645) == (("Paper", 1645),)
    assert event_split({}, 1645) == ()


@pytest.mark.parametrize(("lines", "message"), [
    ([], "non-empty array"),
    ("Chairs", "non-empty array"),
    ([{"category": "Chairs"}], "'amount' must be a number"),
    ([{"category": "", "amount": 1}], "'category' must be a string"),
    ([{"category": "C", "amount": float("nan")}], "finite number"),
    ([{"category": "C", "amount": True}], "'amount' must be a number"),
    (["Chairs"], "expected an object"),
    ([{"category": "C", "amount": 1.0}] * 101, "at most 100 lines"),
    ([{"category": "C", "amount": 1.0}, {"category": "D", "amount": 1.0}],
     "add up to 2.00, not the event's amount 1.99"),
])  # fmt: skip
def test_bad_lines_say_what_is_wrong(lines, message):
    with pytest.raises(LinesError, match=message):
        parse_lines(lines, 199)


@given(events, st.randoms())
def test_the_fold_is_the_same_in_any_order_and_equals_the_batch_sums(items, rnd):
    rows = []
    for i, (customer, split) in enumerate(items):
        cents = sum(c for _, c in split)
        rows.append((f"e{i}", f"C{customer}", 1_700_000_000_000 + i, cents, tuple(split)))
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    forward = {c: s.categories for c, s in fold_events(rows).items()}
    backward = {c: s.categories for c, s in fold_events(shuffled).items()}
    assert forward == backward
    frame = pd.DataFrame({
        "customer_id": [r[1] for r in rows],
        "timestamp": pd.to_datetime([r[2] for r in rows], unit="ms", utc=True),
        "amount": [r[3] / 100 for r in rows],
        "lines": [json.dumps([{"category": c, "amount": v / 100} for c, v in r[4]]) if r[4] else None for r in rows],
    })  # fmt: skip
    assert batch_categories(frame) == {c: t for c, t in forward.items() if t}


@given(st.lists(st.dictionaries(st.sampled_from(CATEGORIES), st.integers(-10_000, 10_000)), min_size=1, max_size=20),
       st.integers(1, 5))  # fmt: skip
def test_shares_are_of_positive_spend_and_add_up(totals, n):
    spec = PreferenceSpec(top_categories(totals, n))
    x = spec.matrix(totals)
    assert x.shape == (len(totals), len(spec.names))
    k = len(spec.categories)
    for row, customer in zip(x, totals, strict=True):
        positive = sum(v for v in customer.values() if v > 0)
        assert row[k + 1] == sum(1 for v in customer.values() if v > 0)
        if positive:
            assert np.isclose(row[: k + 1].sum(), 1.0) and (row[: k + 1] >= 0).all()
        else:
            assert (row[: k + 1] == 0).all()


def test_top_categories_favourite_and_summary_break_ties_by_name():
    totals = [{"Chairs": 500, "Binders": 500, "Art": -100}, {"Paper": 200}]
    assert top_categories(totals, 2) == ("Binders", "Chairs")
    assert favourite(totals[0]) == "Binders" and favourite({"Art": -5}) is None
    summary = preference_summary(totals[0])
    assert summary["categories_bought"] == 2 and summary["share"] == {"Binders": 0.5, "Chairs": 0.5, "Art": 0.0}
    assert summary["spend"] == {"Binders": 5.0, "Chairs": 5.0, "Art": -1.0}


def test_a_segment_is_named_after_a_category_only_when_it_dominates():
    assert dominant_category({"share": {"Chairs": 0.56, "Phones": 0.08, "other": 0.36}}) == "Chairs"
    assert dominant_category({"share": {"Chairs": 0.14, "Phones": 0.13, "other": 0.73}}) is None
    names = {0: "Lapsing frequent buyers", 1: "Lapsing frequent buyers 2", 2: "Lost", 3: "Lost 2"}
    assert with_category(names, {0: "Tables", 1: "Chairs", 2: "Storage", 3: "Storage"}) == {
        0: "Lapsing frequent buyers, mostly Tables", 1: "Lapsing frequent buyers, mostly Chairs",
        2: "Lost, mostly Storage", 3: "Lost, mostly Storage 2"}  # fmt: skip
