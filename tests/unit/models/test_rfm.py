"""The RFM map: quantile edges, tie-safe 1..5 scores, a complete grid, and row-wise determinism."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segstream.models.errors import FeatureSpecError
from segstream.models.features import FEATURE_NAMES
from segstream.models.rfm import RFM_CELLS, RFM_GRID, RFMEdges, RFMScorer, fit_rfm_edges

N_FEATURES = len(FEATURE_NAMES)
R, F, M = (FEATURE_NAMES.index(n) for n in ("recency_days", "frequency", "monetary"))


def realistic_rows(n: int, seed: int) -> np.ndarray:
    """Heavy-tailed rows in FEATURE_NAMES order: integer frequency, some negative spend (returns)."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(mean=2.0, sigma=1.5, size=(n, N_FEATURES))
    x[:, R] = rng.integers(0, 400, n).astype(np.float64)
    x[:, F] = rng.poisson(3, n) + 1.0
    x[rng.random(n) < 0.05, M] *= -1
    return x


def rows(recency: list[float], frequency: list[float], monetary: list[float]) -> np.ndarray:
    """Full feature rows with the given R/F/M values and zeros elsewhere."""
    x = np.zeros((len(recency), N_FEATURES))
    x[:, R], x[:, F], x[:, M] = recency, frequency, monetary
    return x


# Hand-made edges: a value v scores the same on every feature's 10/20/30/40 grid.
HAND = RFMEdges(*(np.array([10.0, 20.0, 30.0, 40.0]) for _ in range(3)))
# A value in the middle of each 1..5 bin of HAND, indexed by "1 + number of edges below".
MID = {1: 5.0, 2: 15.0, 3: 25.0, 4: 35.0, 5: 45.0}


def test_edges_equal_np_quantile() -> None:
    x = realistic_rows(5_000, seed=1)
    edges = fit_rfm_edges(x)
    for name, col in (("recency", R), ("frequency", F), ("monetary", M)):
        expected = np.quantile(x[:, col], [0.2, 0.4, 0.6, 0.8], method="linear")
        assert getattr(edges, name).dtype == np.float64
        assert np.array_equal(getattr(edges, name), expected)


def test_fit_refuses_empty_and_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        fit_rfm_edges(np.empty((0, N_FEATURES)))
    with pytest.raises(ValueError, match="empty"):
        fit_rfm_edges(np.array([]))
    with pytest.raises(ValueError, match="quantiles"):
        fit_rfm_edges(realistic_rows(10, seed=2), quantiles=(0.25, 0.5, 0.75))
    with pytest.raises(ValueError, match="quantiles"):
        fit_rfm_edges(realistic_rows(10, seed=2), quantiles=(0.2, 0.6, 0.4, 0.8))
    with pytest.raises(FeatureSpecError, match="shape"):
        fit_rfm_edges(realistic_rows(10, seed=2)[:, :3])
    bad = realistic_rows(10, seed=2)
    bad[4, M] = np.inf
    with pytest.raises(FeatureSpecError, match="monetary"):
        fit_rfm_edges(bad)


def test_edges_refuse_wrong_count_or_unsorted() -> None:
    good = np.array([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="recency"):
        RFMEdges(np.array([1.0, 2.0, 3.0]), good, good)
    with pytest.raises(ValueError, match="frequency"):
        RFMEdges(good, np.array([1.0, 3.0, 2.0, 4.0]), good)
    with pytest.raises(ValueError, match="monetary"):
        RFMEdges(good, good, np.array([1.0, 2.0, np.nan, 4.0]))


def test_ties_at_an_edge_go_to_the_lower_score() -> None:
    # 62 % one-time buyers: the 20/40/60 % quantiles all land on 1, the 80 % one on 2.
    frequency = [1.0] * 62 + [2.0] * 20 + [4.0] * 18
    x = rows([5.0] * 100, frequency, list(np.linspace(1, 100, 100)))
    edges = fit_rfm_edges(x)
    assert edges.frequency.tolist() == [1.0, 1.0, 1.0, 2.0]
    f_scores = RFMScorer(edges).scores(x)[:, 1]
    assert set(f_scores[:62]) == {1}  # every one-time buyer is F=1, not F=4
    assert set(f_scores[62:82]) == {4}
    assert set(f_scores[82:]) == {5}


def test_score_rule_on_hand_edges() -> None:
    values = [5.0, 10.0, 10.5, 20.0, 40.0, 41.0]
    s = RFMScorer(HAND).scores(rows(values, values, values))
    assert s.dtype == np.int64 and s.shape == (6, 3)
    assert s[:, 1].tolist() == [1, 1, 2, 2, 4, 5]  # F: 1 + #(edges < v)
    assert s[:, 2].tolist() == [1, 1, 2, 2, 4, 5]  # M: same rule
    assert s[:, 0].tolist() == [5, 5, 4, 4, 2, 1]  # R: 5 - #(edges < recency); most recent scores 5


def test_grid_covers_every_pair_and_every_cell_is_reachable() -> None:
    assert len(RFM_GRID) == 5 and all(len(row) == 5 for row in RFM_GRID)
    assert {cell for row in RFM_GRID for cell in row} == set(RFM_CELLS)
    assert len(RFM_CELLS) == 11
    scorer = RFMScorer(HAND)
    # Every (R, F, M) combination; the recency value for score r is the one in bin 6 - r.
    combos = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    x = rows([MID[6 - r] for r, _, _ in combos], [MID[f] for _, f, _ in combos], [MID[m] for _, _, m in combos])
    assert scorer.scores(x).tolist() == [list(c) for c in combos]
    ids = scorer.predict_segment(x)
    assert ids.dtype == np.int64
    expected = [RFM_CELLS.index(RFM_GRID[r - 1][(f + m + 1) // 2 - 1]) for r, f, m in combos]
    assert ids.tolist() == expected
    assert set(ids.tolist()) == set(range(len(RFM_CELLS)))


def test_corners_and_fm_rounds_half_up() -> None:
    scorer = RFMScorer(HAND)
    cases = {
        (5, 5, 5): "Champions",
        (5, 1, 1): "Recent",
        (1, 5, 5): "Can't lose",
        (1, 1, 1): "Lost",
        (5, 1, 2): "Promising",  # FM = floor(1.5 + 0.5) = 2, not 1 ("Recent")
        (3, 4, 5): "Loyal",  # FM = 5
        (2, 2, 3): "At risk",  # FM = 3
    }
    x = rows([MID[6 - r] for r, _, _ in cases], [MID[f] for _, f, _ in cases], [MID[m] for _, _, m in cases])
    assert scorer.cell_names(scorer.predict_segment(x)) == list(cases.values())


def test_names_cover_all_cells_with_stable_ids() -> None:
    scorer = RFMScorer(HAND)
    assert scorer.names == {i: name for i, name in enumerate(RFM_CELLS)}
    assert scorer.feature_names == ("recency_days", "frequency", "monetary")
    assert scorer.cell_names(np.array([0, 8, 10])) == ["Champions", "Can't lose", "Lost"]


_training = arrays(
    np.float64,
    st.tuples(st.integers(1, 30), st.just(3)),
    elements=st.integers(-5, 40).map(float),  # small integers: many ties, edges often repeat
)
_values = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    train=_training,
    batch=arrays(np.float64, st.tuples(st.integers(1, 25), st.just(3)), elements=_values),
    bump=arrays(np.float64, 3, elements=st.floats(0, 50, allow_nan=False, allow_infinity=False)),
    seed=st.integers(0, 2**32 - 1),
)
def test_scores_monotone_and_segments_row_wise(
    train: np.ndarray, batch: np.ndarray, bump: np.ndarray, seed: int
) -> None:
    scorer = RFMScorer(fit_rfm_edges(rows(train[:, 0], train[:, 1], train[:, 2])))
    x = rows(batch[:, 0], batch[:, 1], batch[:, 2])
    s = scorer.scores(x)
    assert ((s >= 1) & (s <= 5)).all()

    raised = x.copy()
    raised[:, R] += bump[0]
    raised[:, F] += bump[1]
    raised[:, M] += bump[2]
    s2 = scorer.scores(raised)
    assert (s2[:, 0] <= s[:, 0]).all()  # older never scores as more recent
    assert (s2[:, 1] >= s[:, 1]).all()  # more purchases never lowers F
    assert (s2[:, 2] >= s[:, 2]).all()  # more spend never lowers M

    ids = scorer.predict_segment(x)
    for i in range(len(x)):
        assert scorer.predict_segment(x[i]).tolist() == [ids[i]]
    perm = np.random.default_rng(seed).permutation(len(x))
    assert np.array_equal(scorer.predict_segment(x[perm]), ids[perm])


def test_scorer_pickles_and_edges_round_trip_through_json() -> None:
    x = realistic_rows(2_000, seed=3)
    scorer = RFMScorer(fit_rfm_edges(x))
    clone = pickle.loads(pickle.dumps(scorer))
    assert np.array_equal(clone.scores(x), scorer.scores(x))
    assert np.array_equal(clone.predict_segment(x), scorer.predict_segment(x))
    assert clone.names == scorer.names
    assert clone.edges_dict() == scorer.edges_dict()

    manifest = json.loads(json.dumps(scorer.edges_dict()))
    assert set(manifest) == {"recency", "frequency", "monetary"}
    assert all(len(v) == 4 and all(isinstance(e, float) for e in v) for v in manifest.values())
    reloaded = RFMScorer(RFMEdges.from_dict(manifest))
    assert np.array_equal(reloaded.predict_segment(x), scorer.predict_segment(x))


def test_scorer_refuses_wrong_shapes_and_non_finite_values() -> None:
    scorer = RFMScorer(HAND)
    x = realistic_rows(50, seed=4)
    assert scorer.predict_segment(x[0]).shape == (1,)
    assert scorer.scores(np.empty((0, N_FEATURES))).shape == (0, 3)
    with pytest.raises(FeatureSpecError, match="shape"):
        scorer.predict_segment(x[:, :5])
    with pytest.raises(FeatureSpecError, match="shape"):
        scorer.scores(np.zeros((2, 3, N_FEATURES)))
    for col, name in ((R, "recency_days"), (F, "frequency"), (M, "monetary")):
        bad = x.copy()
        bad[7, col] = np.nan
        with pytest.raises(FeatureSpecError, match=name):
            scorer.predict_segment(bad)
    bad = x.copy()
    bad[7, M] = -np.inf
    with pytest.raises(FeatureSpecError, match="monetary"):
        scorer.scores(bad)
    # Columns the map does not read may hold anything.
    other = x.copy()
    other[:, FEATURE_NAMES.index("aov")] = np.nan
    assert np.array_equal(scorer.predict_segment(other), scorer.predict_segment(x))


def test_describe_rule_is_one_paragraph_with_the_edges() -> None:
    text = RFMScorer(HAND).describe_rule()
    assert "\n" not in text
    assert "[10, 20, 30, 40]" in text
    assert "Champions" in text and "Can't lose" in text
