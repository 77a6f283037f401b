"""The pure attribute encoder, the feature spec with attributes, the wide scorers and the serving refusal."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from segstream.models.attributes import (
    CATEGORICAL,
    NUMERIC,
    OTHER,
    Attribute,
    AttributeSpec,
    WideSegmentScorer,
    WideTreeScorer,
)
from segstream.models.bundle_verify import needed_attributes, refuse_attributes
from segstream.models.errors import BundleError, FeatureSpecError
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, FeatureSpec
from segstream.models.scoring import signed_log1p
from segstream.models.serving import ServingModels

# The behaviour-only hash, pinned in test_features.py too: attributes must not move it.
GOLDEN_HASH = "9b9c162a1a76e267e56e8c5b328cc69a084e816401f2a7bcd70e671bedf83ddc"

SPEC = AttributeSpec(
    (
        Attribute("income", NUMERIC, fill=3.5),
        Attribute("owner", CATEGORICAL, levels=("no", "yes")),
        Attribute("region", CATEGORICAL, levels=("north", "south", "east")),
        Attribute("age", NUMERIC, fill=40.0),
    )
)

_raw = st.one_of(
    st.none(),
    st.just(""),
    st.just("  "),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.text(max_size=8),
    st.sampled_from(["yes", "no", "north", "south", "east", "west", OTHER, " yes ", "4.5"]),
    st.booleans(),
)
_rows = st.dictionaries(st.sampled_from(["income", "owner", "region", "age", "unrelated"]), _raw, max_size=5)


@settings(max_examples=300, deadline=None)
@given(row=_rows)
def test_encode_is_deterministic_fixed_width_and_finite(row):
    first = SPEC.encode_row(row)
    again = SPEC.encode_row(dict(reversed(list(row.items()))))
    assert first.shape == (SPEC.width,) == (len(SPEC.columns),)
    assert np.array_equal(first, again)
    assert np.isfinite(first).all()
    # Exactly one level column is hot per categorical attribute.
    for attr, cols in SPEC.groups():
        if attr.kind == CATEGORICAL:
            assert first[cols].sum() == 1.0 and set(first[cols]) <= {0.0, 1.0}


@settings(max_examples=200, deadline=None)
@given(level=st.text(max_size=10))
def test_unseen_levels_map_to_other(level):
    vec = SPEC.encode_row({"region": level})
    hot = [c for c, v in zip(SPEC.columns, vec, strict=True) if c.startswith("region=") and v == 1.0]
    expected = f"region={level.strip()}" if level.strip() in ("north", "south", "east") else f"region={OTHER}"
    assert hot == [expected]


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(_rows, min_size=0, max_size=20))
def test_column_wise_encode_equals_row_wise(rows):
    by_row = SPEC.encode_rows(rows)
    columns = {name: [r.get(name) for r in rows] for name in SPEC.names}
    by_col = SPEC.encode_columns(columns, len(rows))
    assert by_row.shape == by_col.shape == (len(rows), SPEC.width)
    assert np.array_equal(by_row, by_col)


def test_missing_and_unparsable_numbers_take_the_training_median():
    for value in (None, "", "n/a", float("nan"), float("inf"), True):
        assert SPEC.encode_row({"income": value})[0] == 3.5
    assert SPEC.encode_row({"income": " 7.25 "})[0] == 7.25
    assert SPEC.encode_row({})[list(SPEC.columns).index("age")] == 40.0


def test_column_names_and_spec_round_trip():
    assert SPEC.columns == ("income", "owner=no", "owner=yes", "owner=other", "region=north", "region=south",
                            "region=east", "region=other", "age")  # fmt: skip
    again = AttributeSpec.from_dict(json.loads(json.dumps(SPEC.to_dict())))
    assert again == SPEC and again.hash == SPEC.hash
    with pytest.raises(FeatureSpecError, match="version"):
        AttributeSpec.from_dict({**SPEC.to_dict(), "version": 99})


def test_behaviour_only_feature_spec_and_hash_are_unchanged():
    assert FEATURE_SPEC.attributes is None and FEATURE_SPEC.behaviour
    assert FEATURE_SPEC.hash == GOLDEN_HASH
    assert set(FEATURE_SPEC.to_dict()) == {"name", "version", "names", "windows_days", "hash"}
    assert FEATURE_SPEC.input_names == FEATURE_NAMES
    assert FeatureSpec.for_manifest(FEATURE_SPEC.to_dict()) is FEATURE_SPEC


def test_attributes_are_part_of_the_spec_and_its_hash():
    joined = FEATURE_SPEC.with_attributes(SPEC)
    profile = FEATURE_SPEC.with_attributes(SPEC, behaviour=False)
    assert len({FEATURE_SPEC.hash, joined.hash, profile.hash}) == 3
    assert joined.input_names == (*FEATURE_NAMES, *SPEC.columns)
    assert profile.input_names == SPEC.columns
    other_median = AttributeSpec((Attribute("income", NUMERIC, fill=3.6), *SPEC.attributes[1:]))
    assert FEATURE_SPEC.with_attributes(other_median).hash != joined.hash
    for spec in (joined, profile):
        stored = json.loads(json.dumps(spec.to_dict()))
        assert stored["hash"] == spec.hash
        assert FeatureSpec.for_manifest(stored).hash == spec.hash
    with pytest.raises(ValueError):
        FEATURE_SPEC.with_attributes(None, behaviour=False)


def test_wide_scorers_equal_sklearn():
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.lognormal(2, 1, 2000), rng.integers(0, 2, 2000), rng.normal(0, 5, 2000)])
    names = ("b", "a=1", "c")
    input_names = ("zzz", *names)
    wide = np.column_stack([rng.normal(size=2000), x])
    t = signed_log1p(np.ascontiguousarray(x))
    scaler = StandardScaler().fit(t)
    pca = PCA(n_components=2, svd_solver="full").fit(scaler.transform(t))
    km = KMeans(n_clusters=3, n_init=2, random_state=0).fit(pca.transform(scaler.transform(t)))
    scorer = WideSegmentScorer(scaler, pca, km, names, [7, 8, 9], {7: "a", 8: "b", 9: "c"}, input_names)
    assert np.array_equal(scorer.predict_labels(wide), km.predict(pca.transform(scaler.transform(t))))
    assert set(scorer.predict_segment(wide)) <= {7, 8, 9}
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, km.labels_)
    tree_scorer = WideTreeScorer(tree, names, input_names)
    assert np.array_equal(tree_scorer.predict(wide), tree.predict(x))
    steps = tree_scorer.decision_path(wide[0])
    assert steps and all(s.feature in names for s in steps)
    with pytest.raises(FeatureSpecError):
        scorer.predict_segment(x)  # narrower than input_names
    with pytest.raises(FeatureSpecError):
        WideTreeScorer(tree, ("nope", "a=1", "c"), input_names)


def test_serving_knows_what_it_needs():
    serving = ServingModels(segments=None, tree=None, purchase=None, names={}, attributes=SPEC,  # type: ignore[arg-type]
                            behaviour=False)  # fmt: skip
    assert serving.needs_attributes and not serving.uses_behaviour
    assert serving.input_names == SPEC.columns
    assert np.isnan(serving.predict_spend(np.zeros((3, SPEC.width)))).all()
    plain = ServingModels(segments=None, tree=None, purchase=None, names={})  # type: ignore[arg-type]
    del plain.__dict__["attributes"], plain.__dict__["behaviour"]  # as unpickled from an older bundle
    assert not plain.needs_attributes and plain.uses_behaviour and plain.input_names == FEATURE_NAMES


def test_a_bundle_needing_attributes_is_refused_with_one_clear_message(tmp_path):
    spec = FEATURE_SPEC.with_attributes(SPEC, behaviour=False).to_dict()
    assert needed_attributes(spec) == ["income", "owner", "region", "age"]
    assert needed_attributes(FEATURE_SPEC.to_dict()) == []
    refuse_attributes(tmp_path, FEATURE_SPEC.to_dict())  # behaviour-only: nothing to refuse
    with pytest.raises(BundleError, match=r"profile-only .* income, owner, region, age; score it in batch"):
        refuse_attributes(tmp_path, spec)
    joined = FEATURE_SPEC.with_attributes(SPEC).to_dict()
    with pytest.raises(BundleError, match=r"read the attribute\(s\) income, owner, region, age; .* customer-profiles"):
        refuse_attributes(tmp_path, joined)


def test_encode_frame_values_from_pandas():
    frame = pd.DataFrame({"income": ["1.5", None, "x"], "owner": ["yes", np.nan, "maybe"]})
    out = SPEC.encode_columns({c: frame[c].to_numpy(dtype=object) for c in frame}, 3)
    cols = list(SPEC.columns)
    assert out[:, cols.index("income")].tolist() == [1.5, 3.5, 3.5]
    assert out[:, cols.index("owner=yes")].tolist() == [1.0, 0.0, 0.0]
    assert out[:, cols.index("owner=other")].tolist() == [0.0, 1.0, 1.0]
    assert out[:, cols.index("region=other")].tolist() == [1.0, 1.0, 1.0]  # absent column: missing
