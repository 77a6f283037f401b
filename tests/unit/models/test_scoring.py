"""The numpy scorers give exactly sklearn's answers (labels equal, not close)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from segstream.models.errors import FeatureSpecError
from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import (
    EstimatorPurchaseScorer,
    LinearPurchaseScorer,
    SegmentScorer,
    TreeScorer,
    signed_expm1,
    signed_log1p,
)

SUBSET = ("recency_days", "frequency", "monetary", "aov", "tenure_days", "purchase_rate", "spend_365d")
COLS = [FEATURE_NAMES.index(f) for f in SUBSET]
N_FEATURES = len(FEATURE_NAMES)


def realistic_rows(n: int, seed: int) -> np.ndarray:
    """Heavy-tailed, partly negative (returns), partly integer rows in FEATURE_NAMES order."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(mean=2.0, sigma=1.5, size=(n, N_FEATURES))
    x[:, FEATURE_NAMES.index("frequency")] = rng.poisson(8, n)
    neg = rng.random(n) < 0.05
    x[neg, FEATURE_NAMES.index("monetary")] *= -1
    x[rng.random(n) < 0.1, FEATURE_NAMES.index("spend_365d")] = 0.0
    return x


@pytest.fixture(scope="module")
def fitted() -> dict:
    x = realistic_rows(5_000, seed=1)
    t = signed_log1p(sub(x))
    scaler = StandardScaler().fit(t)
    pca = PCA(n_components=4, svd_solver="full").fit(scaler.transform(t))
    kmeans = KMeans(n_clusters=6, n_init=2, random_state=0).fit(pca.transform(scaler.transform(t)))
    label_to_id = np.array([10, 11, 12, 13, 14, 15])
    scorer = SegmentScorer(scaler, pca, kmeans, SUBSET, label_to_id, {i: f"s{i}" for i in label_to_id})
    return {"x": x, "scaler": scaler, "pca": pca, "kmeans": kmeans, "scorer": scorer, "ids": label_to_id}


def sub(x: np.ndarray) -> np.ndarray:
    """The model columns, C-ordered as the scorers and the trainer use them."""
    return np.ascontiguousarray(x[:, COLS])


def sklearn_labels(f: dict, x: np.ndarray) -> np.ndarray:
    t = signed_log1p(sub(x))
    return f["kmeans"].predict(f["pca"].transform(f["scaler"].transform(t)))


def test_signed_log1p_round_trips_and_keeps_sign() -> None:
    x = np.array([-1000.0, -1.0, 0.0, 0.5, 1e6])
    assert np.array_equal(np.sign(signed_log1p(x)), np.sign(x))
    np.testing.assert_allclose(signed_expm1(signed_log1p(x)), x, rtol=1e-12)


def test_segments_equal_sklearn_on_100k_rows(fitted: dict) -> None:
    x = np.vstack([realistic_rows(50_000, seed=2), realistic_rows(50_000, seed=3) * 0.01])
    labels = fitted["scorer"].predict_labels(x)
    assert np.array_equal(labels, sklearn_labels(fitted, x))
    assert np.array_equal(fitted["scorer"].predict_segment(x), fitted["ids"][labels])
    assert len(np.unique(labels)) == 6


def test_pca_projection_equals_sklearn(fitted: dict) -> None:
    x = realistic_rows(1000, seed=4)
    expected = fitted["pca"].transform(fitted["scaler"].transform(signed_log1p(sub(x))))
    assert np.array_equal(fitted["scorer"].transform(x), expected)
    assert np.array_equal(fitted["scorer"].project_pca(x), expected[:, :2])


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.just(N_FEATURES)),
        elements=st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False),
    )
)
def test_segments_equal_sklearn_on_any_rows(fitted: dict, x: np.ndarray) -> None:
    ours = fitted["scorer"].predict_labels(x)
    theirs = sklearn_labels(fitted, x)
    # Documented tolerance: only a row whose two nearest centres are equidistant to ~1e-12 may differ.
    z = fitted["scorer"].transform(x)
    d = np.sort(((z[:, None, :] - fitted["kmeans"].cluster_centers_[None]) ** 2).sum(axis=2), axis=1)
    clear = d[:, 1] - d[:, 0] > 1e-9 * np.maximum(d[:, 1], 1.0)
    assert np.array_equal(ours[clear], theirs[clear])


def test_input_memory_layout_does_not_change_results(fitted: dict) -> None:
    x = realistic_rows(20_000, seed=13)
    scorer = fitted["scorer"]
    assert np.array_equal(scorer.transform(np.asfortranarray(x)), scorer.transform(x))
    assert np.array_equal(scorer.predict_segment(np.asfortranarray(x)), scorer.predict_segment(x))


def test_scorer_pickles_and_refuses_wrong_shapes(fitted: dict) -> None:
    scorer = pickle.loads(pickle.dumps(fitted["scorer"]))
    x = realistic_rows(100, seed=5)
    assert np.array_equal(scorer.predict_segment(x), fitted["scorer"].predict_segment(x))
    assert scorer.predict_segment(x[0]).shape == (1,)
    with pytest.raises(FeatureSpecError, match="shape"):
        scorer.predict_segment(x[:, :5])
    bad = x.copy()
    bad[3, FEATURE_NAMES.index("aov")] = np.nan
    with pytest.raises(FeatureSpecError, match="aov"):
        scorer.predict_segment(bad)


@pytest.fixture(scope="module")
def tree() -> tuple[DecisionTreeClassifier, TreeScorer]:
    x = realistic_rows(4000, seed=6)
    y = np.where(x[:, 0] > 10, 7, np.where(x[:, 2] > 20, 3, 5))
    y[::17] = 9  # noise class so leaves are impure
    model = DecisionTreeClassifier(criterion="entropy", max_depth=7, random_state=0).fit(sub(x), y)
    return model, TreeScorer(model, SUBSET)


def test_tree_equals_sklearn_on_100k_rows(tree: tuple[DecisionTreeClassifier, TreeScorer]) -> None:
    model, scorer = tree
    x = realistic_rows(100_000, seed=7)
    assert np.array_equal(scorer.predict(x), model.predict(sub(x)))
    assert np.array_equal(scorer.apply(x), model.apply(sub(x).astype(np.float32)))


def test_tree_equals_sklearn_on_threshold_values(tree: tuple[DecisionTreeClassifier, TreeScorer]) -> None:
    model, scorer = tree
    # Rows sitting exactly on (and one float32 step around) every threshold: the float32 cast matters here.
    inner = model.tree_.children_left != -1
    rng = np.random.default_rng(8)
    x = realistic_rows(3 * int(inner.sum()), seed=9)
    for i, (f, t) in enumerate(zip(model.tree_.feature[inner], model.tree_.threshold[inner], strict=True)):
        for j, v in enumerate((t, np.nextafter(np.float32(t), np.float32(np.inf)), np.float32(t))):
            x[3 * i + j, COLS[f]] = float(v)
    x = x[rng.permutation(len(x))]
    assert np.array_equal(scorer.predict(x), model.predict(sub(x)))


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.just(N_FEATURES)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    )
)
def test_tree_equals_sklearn_on_any_rows(tree: tuple[DecisionTreeClassifier, TreeScorer], x: np.ndarray) -> None:
    model, scorer = tree
    assert np.array_equal(scorer.predict(x), model.predict(sub(x)))


def test_decision_path_ends_in_the_predicted_leaf(tree: tuple[DecisionTreeClassifier, TreeScorer]) -> None:
    model, scorer = tree
    x = realistic_rows(50, seed=10)
    for row in x:
        steps = scorer.decision_path(row)
        assert steps and all(s.feature in SUBSET for s in steps)
        node_path = model.decision_path(row[COLS].reshape(1, -1).astype(np.float32)).indices
        assert len(steps) == len(node_path) - 1
        for s in steps:
            # sklearn compares the float32 value with the threshold.
            assert (float(np.float32(s.value)) <= s.threshold) == (s.direction == "<=")
            assert s.value == row[FEATURE_NAMES.index(s.feature)]
    with pytest.raises(FeatureSpecError):
        scorer.decision_path(x[:2])


def test_linear_purchase_scorer_matches_sklearn() -> None:
    x = realistic_rows(3000, seed=11)
    y = x[:, FEATURE_NAMES.index("spend_90d")] * 0.8 + x[:, 1] * 3 + 5
    model = LinearRegression().fit(x, y)
    scorer = LinearPurchaseScorer(model, FEATURE_NAMES)
    test = realistic_rows(10_000, seed=12)
    np.testing.assert_allclose(scorer.predict(test), model.predict(test), rtol=1e-12, atol=1e-9)
    wrapped = EstimatorPurchaseScorer(model, FEATURE_NAMES)
    assert np.array_equal(wrapped.predict(test), model.predict(test))
    assert pickle.loads(pickle.dumps(scorer)).intercept == scorer.intercept


def test_unknown_feature_name_is_refused() -> None:
    model = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    with pytest.raises(FeatureSpecError, match="nope"):
        LinearPurchaseScorer(model, ("recency_days", "frequency", "nope"))
