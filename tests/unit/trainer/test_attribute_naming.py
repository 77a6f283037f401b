"""Names and descriptions of segments found on customer attributes: unique, and every word true."""

from __future__ import annotations

import re

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.attributes import CATEGORICAL, NUMERIC, Attribute, AttributeSpec
from segstream.trainer.naming import (
    AVERAGE_NAME,
    HIGH_RANK,
    LEVEL_LIFT,
    LEVEL_SHARE,
    LOW_RANK,
    attribute_profiles,
    attribute_traits,
    describe_attributes,
    name_attribute_segments,
)

ORDER = ["income", "age", "owner"]


def _profile(income: float, age: float, level: str = "yes", share: float = 0.5, overall: float = 0.5) -> dict:
    return {
        "numeric": {"income": {"median": 1.0, "rank": income}, "age": {"median": 30.0, "rank": age}},
        "categorical": {"owner": {"level": level, "share": share, "overall": overall}},
    }


_profiles = st.dictionaries(
    st.integers(0, 9),
    st.builds(_profile, st.floats(0, 1), st.floats(0, 1), st.sampled_from(["yes", "no", "other"]),
              st.floats(0, 1), st.floats(0, 1)),  # fmt: skip
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(profiles=_profiles)
def test_names_are_unique_and_every_trait_is_true(profiles):
    names = name_attribute_segments(profiles, ORDER)
    assert set(names) == set(profiles) and len(set(names.values())) == len(names)
    for seg, name in names.items():
        core = re.sub(r" \((?:\w+ )?p\d+\)$", "", re.sub(r" \d+$", "", name))
        if core == AVERAGE_NAME:
            assert not attribute_traits(profiles[seg], ORDER)
            continue
        for trait in (t.strip() for t in core.lower().split(",")):
            if "=" in trait:
                stats = profiles[seg]["categorical"]["owner"]
                assert trait == f"owner={stats['level']}" and stats["level"] != "other"
                assert stats["share"] >= LEVEL_SHARE and stats["share"] - stats["overall"] >= LEVEL_LIFT
            else:
                word, attr = trait.split()
                rank = profiles[seg]["numeric"][attr]["rank"]
                assert rank >= HIGH_RANK if word == "high" else rank <= LOW_RANK


def test_strongest_traits_first_and_collisions_told_apart():
    profiles = {0: _profile(0.95, 0.2), 1: _profile(0.8, 0.5), 2: _profile(0.5, 0.5), 3: _profile(0.45, 0.55)}
    names = name_attribute_segments(profiles, ORDER)
    assert names[0] == "High income, low age"
    assert names[1] == "High income"
    assert names[2] == "Average profile (income p50)" and names[3] == "Average profile (income p45)"
    lots = {0: _profile(0.5, 0.5, "yes", 0.9, 0.4)}
    assert name_attribute_segments(lots, ORDER)[0] == "Owner=yes"


def test_profiles_from_encoded_attributes_and_the_description():
    spec = AttributeSpec((Attribute("income", NUMERIC, fill=2.0), Attribute("owner", CATEGORICAL, levels=("yes",))))
    encoded = pd.DataFrame(spec.encode_rows([{"income": i, "owner": "yes" if i > 5 else "no"} for i in range(10)]),
                           columns=list(spec.columns), index=[str(i) for i in range(10)])  # fmt: skip
    ids = pd.Series([0] * 5 + [1] * 5, index=encoded.index)
    profiles = attribute_profiles(spec, encoded, ids)
    assert profiles[1]["numeric"]["income"]["median"] == 7.0
    assert profiles[1]["numeric"]["income"]["rank"] == 0.75  # mid-rank of 7 among 0..9
    assert profiles[1]["categorical"]["owner"] == {"level": "yes", "share": 0.8, "overall": 0.4}
    assert profiles[0]["categorical"]["owner"]["level"] == "other"
    assert describe_attributes(profiles[1]) == "median income 7 (p75), owner=yes 80% (all customers 40%)"
    names = name_attribute_segments(profiles, spec.names)
    # owner=yes is 40 points above everyone (strength 0.4), income's rank 0.25 from the middle.
    assert names == {0: "Low income", 1: "Owner=yes, high income"}
