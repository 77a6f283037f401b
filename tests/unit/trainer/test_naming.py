"""Segment names from hand-made centroids, and Hungarian id matching."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.trainer.naming import (
    PROMISING_NAMES,
    SEGMENT_NAMES,
    comparable,
    demote_unproven,
    describe_segment,
    describe_segments,
    descriptive_name,
    initial_ids,
    match_ids,
    name_segments,
    percentile_ranks,
)

COLUMNS = ["recency_days", "frequency", "monetary", "aov", "tenure_days"]


def population(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "recency_days": rng.uniform(0, 365, n),
            "frequency": rng.lognormal(2, 1, n),
            "monetary": rng.lognormal(5, 1.2, n),
            "aov": rng.lognormal(3, 0.8, n),
            "tenure_days": rng.uniform(0, 720, n),
        }
    )


# recency, frequency, monetary, aov, tenure -> the name a person would give it.
HAND_MADE = {
    "Champions": (3, 60, 4000, 60, 500),
    "Loyal": (60, 30, 500, 15, 700),
    "Big spenders": (150, 3, 1500, 400, 400),
    "New": (4, 2, 40, 20, 10),
    "At risk": (340, 30, 2500, 60, 650),
    "Lost": (350, 1.5, 20, 12, 600),
    "Low value": (90, 2, 15, 6, 200),
}


def centroids(rows: dict[str, tuple], ids: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame(list(rows.values()), columns=COLUMNS, index=ids or list(range(len(rows))), dtype=float)


def test_hand_made_centroids_get_the_expected_names() -> None:
    names = name_segments(centroids(HAND_MADE), population())
    assert [names[i] for i in range(len(HAND_MADE))] == list(HAND_MADE)


def test_names_follow_centroids_not_ids() -> None:
    ids = [40, 3, 17, 8, 25, 1, 99]
    names = name_segments(centroids(HAND_MADE, ids), population())
    assert [names[i] for i in ids] == list(HAND_MADE)


def test_small_k_picks_the_best_fitting_names() -> None:
    two = {"Champions": HAND_MADE["Champions"], "Low value": HAND_MADE["Low value"]}
    names = name_segments(centroids(two), population())
    assert names == {0: "Champions", 1: "Low value"}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(0, 10_000))
def test_names_are_unique_for_any_k(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pop = population(500, seed)
    cents = pop.sample(k, random_state=seed).set_axis(list(rng.permutation(100)[:k]))
    names = name_segments(cents, pop)
    assert sorted(names) == sorted(int(i) for i in cents.index)
    assert len(set(names.values())) == k
    descriptive = re.compile(
        r"^(Recent|Lapsing|Lapsed) (one-time|repeat|frequent) buyers( \((high|mid|low) spend\))?( \d+)?$"
    )
    assert all(n in SEGMENT_NAMES or descriptive.match(n) for n in names.values())


def test_naming_is_deterministic() -> None:
    cents, pop = centroids(HAND_MADE), population()
    assert name_segments(cents, pop) == name_segments(cents.copy(), pop.copy())


def test_percentile_ranks_are_mid_ranks() -> None:
    pop = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    ranks = percentile_ranks(pd.DataFrame({"a": [0.0, 2.0, 9.0]}), pop)
    assert ranks["a"].tolist() == [0.0, 0.375, 1.0]


def test_initial_ids_follow_monetary_not_labels() -> None:
    cents = centroids(HAND_MADE)
    ids = initial_ids(cents)
    shuffled = cents.iloc[[3, 1, 6, 0, 2, 5, 4]].set_axis(range(7))
    again = initial_ids(shuffled)
    # The same centroid gets the same id whatever its label.
    for label, row in shuffled.iterrows():
        original = cents.index[(cents == row).all(axis=1)][0]
        assert again[label] == ids[original]
    assert ids[0] == 0  # Champions have the highest monetary


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(6))), st.integers(0, 1000))
def test_permuting_labels_keeps_ids(perm: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    old = rng.normal(size=(6, 5)) * 3
    old_ids = [5, 0, 9, 2, 7, 1]
    new = old[perm] + rng.normal(scale=0.01, size=old.shape)
    mapping = match_ids(new, list(range(6)), old, old_ids, order_key=list(range(6)))
    assert [mapping[i] for i in range(6)] == [old_ids[p] for p in perm]


def test_unmatched_and_far_segments_get_fresh_ids() -> None:
    old = np.array([[0.0, 0.0], [5.0, 5.0]])
    new = np.array([[5.1, 5.0], [0.1, 0.0], [-9.0, 9.0]])
    mapping = match_ids(new, [0, 1, 2], old, [3, 8], order_key=[0, 1, 2], used_ids=[11])
    assert mapping == {0: 8, 1: 3, 2: 12}
    # A new centroid far from every old one is a new segment even if Hungarian pairs it.
    far = match_ids(np.array([[0.0, 0.0], [40.0, -40.0]]), [0, 1], old, [3, 8], order_key=[0, 1])
    assert far == {0: 3, 1: 9}


def test_comparable_space_uses_the_given_scaler() -> None:
    cents = pd.DataFrame({"a": [np.e - 1, -(np.e - 1)], "b": [0.0, 0.0]})
    z = comparable(cents, np.array([0.0, 1.0]), np.array([2.0, 1.0]))
    np.testing.assert_allclose(z, [[0.5, -1.0], [-0.5, -1.0]])


def test_lapsed_one_time_buyers_are_never_flattered() -> None:
    """However few segments, one-time buyers who lapsed long ago get no Champions/Loyal/Big spenders name."""
    pop = population()
    lapsed = {"a": (340, 1, 300, 300, 600), "b": (300, 1, 40, 40, 500)}  # high and low spend, both one-time
    names = name_segments(centroids(lapsed), pop)
    assert not set(names.values()) & {"Champions", "Loyal", "Big spenders", "New", "At risk"}
    assert names[1] == "Lost" and names[0].startswith("Lapsed one-time buyers")


def test_descriptions_speak_plainly() -> None:
    pop = population()
    cents = centroids(HAND_MADE)
    text = describe_segments(cents, pop)
    assert text[0].startswith("typically bought 60 times, last purchase 3 days ago, spends")
    assert "bought once" in describe_segment({"frequency": 1.0, "recency_days": 500, "monetary": 0}, pop)
    assert "16 months ago" in describe_segment({"frequency": 2.0, "recency_days": 487, "monetary": 100}, pop)


# Planted behaviour groups: (recency, frequency, monetary, aov, tenure) centres and the name they must get.
PLANTED = {
    "Champions": (5, 40, 3000, 75, 600),
    "Loyal": (20, 20, 600, 30, 700),
    "New": (6, 2, 60, 30, 12),
    "Lost": (330, 1, 25, 25, 500),
    "Low value": (100, 3, 12, 4, 250),
}


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 10_000),
    st.lists(st.integers(100, 200), min_size=len(PLANTED), max_size=len(PLANTED)),
    st.floats(0.05, 0.3),
)
def test_names_land_on_planted_groups(seed: int, sizes: list[int], noise: float) -> None:
    """Group sizes within 2x of each other and any noise: each planted group's profile gets the planted name."""
    rng = np.random.default_rng(seed)
    frames = []
    for (_, centre), n in zip(PLANTED.items(), sizes, strict=True):
        frames.append(pd.DataFrame(np.asarray(centre) * np.exp(rng.normal(0, noise, (n, 5))), columns=COLUMNS))
    pop = pd.concat(frames, ignore_index=True)
    profiles = pd.DataFrame([f.median() for f in frames], index=range(len(frames)))
    names = name_segments(profiles, pop)
    assert [names[i] for i in range(len(PLANTED))] == list(PLANTED)


def test_a_retrained_segment_keeps_its_name_while_it_is_true() -> None:
    pop, cents = population(), centroids(HAND_MADE)
    fresh = name_segments(cents, pop)
    # Loyal may stay Loyal; "Champions" for the Lost profile is no longer true and is not kept.
    kept = name_segments(cents, pop, previous={1: "Loyal", 5: "Champions"})
    assert kept[1] == "Loyal" and kept[5] != "Champions" and kept[0] == fresh[0] == "Champions"
    plain = descriptive_name(cents.loc[5], pop)
    assert name_segments(cents, pop, previous={5: plain})[5] == plain


def test_promising_names_that_failed_in_held_out_time_are_demoted() -> None:
    pop, cents = population(), centroids(HAND_MADE)
    names = name_segments(cents, pop)
    repeat = {i: 0.5 for i in names} | {0: 0.1}  # the Champions segment did not come back
    demoted, notes = demote_unproven(names, repeat, 0.3, cents, pop)
    assert demoted[0] == descriptive_name(cents.loc[0], pop) and demoted[0] not in PROMISING_NAMES
    assert {k: v for k, v in demoted.items() if k != 0} == {k: v for k, v in names.items() if k != 0}
    assert len(notes) == 1 and "10.0%" in notes[0] and "30.0%" in notes[0]
    assert demote_unproven(names, {i: 0.5 for i in names}, 0.3, cents, pop) == (names, [])
