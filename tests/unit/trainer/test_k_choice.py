"""Choosing k: the criteria are what sklearn says, and the documented rule picks what it promises."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from segstream.trainer.k_choice import Criteria, choose_k, compute_criteria, silhouettes


def _c(k: int, sil: float, ch: float, db: float, stab: float, share: float, inertia: float | None = None) -> Criteria:
    return Criteria(k, inertia if inertia is not None else 100.0 / k, sil, ch, db, stab, share)


def test_silhouettes_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1234, 3))
    labelings = [rng.integers(0, k, len(z)) for k in (2, 4, 7)]
    labelings.append(np.r_[np.zeros(len(z) - 1, dtype=int), 1])  # a one-member cluster
    ours = silhouettes(z, labelings, chunk=300)
    np.testing.assert_allclose(ours, [silhouette_score(z, lab) for lab in labelings], rtol=1e-9, atol=1e-12)
    assert silhouettes(z, [np.zeros(len(z), dtype=int)]) == [-1.0]


def test_criteria_on_planted_blobs() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [8, 0], [0, 8], [8, 8], [4, 16]], dtype=float)
    z = np.vstack([c + rng.normal(0, 0.6, size=(300, 2)) for c in centres])
    z = z[rng.permutation(len(z))]
    crit = compute_criteria(z, range(3, 8), seed=0, resamples=5)
    assert sorted(crit) == [3, 4, 5, 6, 7]
    five = crit[5]
    assert five.stability > 0.97 and five.smallest_share == pytest.approx(0.2, abs=0.01)
    assert max(crit, key=lambda k: crit[k].silhouette) == 5
    # The numbers are sklearn's for the same labels (refit with the same seed and n_init).
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=5, n_init=2, random_state=0).fit(z).labels_
    assert five.calinski_harabasz == pytest.approx(calinski_harabasz_score(z, labels))
    assert five.davies_bouldin == pytest.approx(davies_bouldin_score(z, labels))
    assert choose_k(crit)[0] == 5


def test_floors_exclude_small_segments_and_unstable_k() -> None:
    crit = {
        4: _c(4, 0.30, 900, 1.1, 0.80, 0.10),
        5: _c(5, 0.45, 1200, 0.8, 0.95, 0.01),  # best everywhere, but a 1% segment
        6: _c(6, 0.40, 1100, 0.9, 0.40, 0.05),  # unstable
        7: _c(7, 0.28, 800, 1.2, 0.70, 0.04),
    }
    k, reason, ranks = choose_k(crit)
    assert k == 4 and sorted(ranks) == [4, 7]
    assert "k=4" in reason and "2%" in reason and "stability >= 0.6" in reason


def test_without_a_stable_k_the_size_floor_still_holds() -> None:
    crit = {4: _c(4, 0.3, 900, 1.0, 0.3, 0.10), 5: _c(5, 0.4, 950, 0.9, 0.4, 0.01), 6: _c(6, 0.2, 800, 1.3, 0.5, 0.05)}
    k, reason, _ = choose_k(crit)
    assert k == 4 and "no k was stable enough" in reason


def test_a_tie_goes_to_the_smaller_k() -> None:
    same = {k: _c(k, 0.3, 900, 1.0, 0.9, 0.1, inertia=100.0) for k in (4, 5, 6)}
    assert choose_k(same)[0] == 4


def test_the_knee_counts_when_there_is_one() -> None:
    inertia = {4: 1000.0, 5: 300.0, 6: 250.0, 7: 220.0, 8: 200.0}
    crit = {k: _c(k, 0.3, 900, 1.0, 0.9, 0.1, inertia=v) for k, v in inertia.items()}
    k, reason, _ = choose_k(crit)
    assert k == 5 and "knee (k=5)" in reason


def test_nothing_to_choose_from_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_k({})
