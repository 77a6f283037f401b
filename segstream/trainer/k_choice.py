"""Choosing the number of segments for people, not for one score.

Silhouette alone picks k = 2 on skewed retail data ("the better quarter and the rest"), which no marketer
can run campaigns on. So k is searched in a business range (default 4..8) and chosen by a rule over five
criteria computed for every k on a fixed-seed sample of customers (in PCA space):

- inertia, and its knee (``kneed``, convex and decreasing);
- silhouette (higher is better), on at most ``silhouette_rows`` of the sample;
- Calinski-Harabasz (higher is better) and Davies-Bouldin (lower is better);
- stability: the mean adjusted Rand index between the reference labels of the sample and the labels given
  to the same rows by K-Means refitted on ``resamples`` bootstrap resamples (1.0 = the same segments every
  time; segments that move with the sample cannot carry a campaign);
- the share of customers in the smallest segment.

The rule: a k is eligible when its smallest segment holds at least ``min_share`` of the customers and its
stability is at least ``min_stability``. Among the eligible k, each criterion ranks the candidates
(silhouette, Calinski-Harabasz and stability descending, Davies-Bouldin ascending, distance to the knee
ascending when there is a knee), and the k with the best mean rank wins; a tie goes to the smaller k.
When no k is eligible, the stability floor is dropped, then the size floor, and the reason says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from kneed import KneeLocator
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score

DEFAULT_K_RANGE = range(4, 9)


@dataclass(frozen=True)
class Criteria:
    """Every criterion of one k (JSON-ready through :meth:`to_dict`)."""

    k: int
    inertia: float
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    stability: float
    smallest_share: float

    def to_dict(self) -> dict[str, float]:
        return {
            "inertia": self.inertia,
            "silhouette": self.silhouette,
            "calinski_harabasz": self.calinski_harabasz,
            "davies_bouldin": self.davies_bouldin,
            "stability": self.stability,
            "smallest_share": self.smallest_share,
        }


def silhouettes(z: np.ndarray, labelings: list[np.ndarray], chunk: int = 1000) -> list[float]:
    """Mean silhouette of several labelings of the same rows, computing the distances only once.

    Same definition as ``sklearn.metrics.silhouette_score`` (euclidean; 0 for a one-member cluster), but
    one pass over the pairwise distances serves every k of the search, which makes the search several
    times faster than one sklearn call per k. A labeling with a single cluster scores -1 (no silhouette;
    -1 keeps the curve JSON-clean).
    """
    n = len(z)
    onehots, offsets, counts = [], [0], []
    for lab in labelings:
        ks = int(lab.max()) + 1
        onehots.append(np.eye(ks)[lab])
        offsets.append(offsets[-1] + ks)
        counts.append(np.bincount(lab, minlength=ks).astype(np.float64))
    member = np.hstack(onehots)
    sq = np.einsum("ij,ij->i", z, z)
    scores = [np.zeros(n) for _ in labelings]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (z[start:stop] @ z.T)
        dist = np.sqrt(np.maximum(d2, 0.0))
        dist[np.arange(stop - start), np.arange(start, stop)] = 0.0
        sums = dist @ member
        for j, lab in enumerate(labelings):
            own = lab[start:stop]
            per = sums[:, offsets[j] : offsets[j + 1]]
            rows = np.arange(stop - start)
            size = counts[j][own]
            a = per[rows, own] / np.maximum(size - 1.0, 1.0)
            if (counts[j] > 0).sum() < 2:
                continue  # one cluster: no silhouette (reported as -1 below)
            # An empty cluster (possible in a sample) is never the nearest other cluster.
            mean_other = np.where(counts[j] > 0, per / np.maximum(counts[j], 1.0), np.inf)
            mean_other[rows, own] = np.inf
            b = mean_other.min(axis=1)
            denom = np.maximum(a, b)
            s = np.where(denom > 0, (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
            scores[j][start:stop] = np.where(size > 1, s, 0.0)
    return [float(s.mean()) if len(np.unique(lab)) >= 2 else -1.0 for s, lab in zip(scores, labelings, strict=True)]


def _stability(z: np.ndarray, reference: np.ndarray, k: int, seed: int, resamples: int, rows: int) -> float:
    """Mean ARI of the reference labels against K-Means refitted on bootstrap resamples of ``rows`` rows."""
    rng = np.random.default_rng(seed + 7919 * k)
    subset = np.arange(min(rows, len(z)))
    scores = []
    for b in range(resamples):
        boot = rng.integers(0, len(subset), len(subset))
        km = KMeans(n_clusters=k, n_init=1, random_state=seed + b).fit(z[subset][boot])
        scores.append(adjusted_rand_score(reference[subset], km.predict(z[subset])))
    return float(np.mean(scores)) if scores else 1.0


def compute_criteria(
    z: np.ndarray,
    k_range: Iterable[int],
    seed: int,
    *,
    silhouette_rows: int = 10_000,
    resamples: int = 10,
    stability_rows: int = 5_000,
    n_init: int = 2,
) -> dict[int, Criteria]:
    """Every criterion for each k of ``k_range`` that ``z`` (already the search sample) can hold."""
    fitted: dict[int, KMeans] = {}
    for k in k_range:
        if k >= len(z):
            break
        fitted[k] = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z)
    sil_rows = min(silhouette_rows, len(z))
    sils = silhouettes(z[:sil_rows], [km.labels_[:sil_rows] for km in fitted.values()]) if fitted else []
    out: dict[int, Criteria] = {}
    for (k, km), sil in zip(fitted.items(), sils, strict=True):
        labels = km.labels_
        counts = np.bincount(labels, minlength=k)
        several = len(np.unique(labels)) >= 2
        out[k] = Criteria(
            k=k,
            inertia=float(km.inertia_),
            silhouette=float(sil),
            calinski_harabasz=float(calinski_harabasz_score(z, labels)) if several else 0.0,
            davies_bouldin=float(davies_bouldin_score(z, labels)) if several else float("inf"),
            stability=_stability(z, labels, k, seed, resamples, stability_rows),
            smallest_share=float(counts.min() / len(labels)),
        )
    return out


def knee_of(criteria: dict[int, Criteria]) -> int | None:
    """The knee of the inertia curve, or None (fewer than three k, or no knee)."""
    ks = sorted(criteria)
    if len(ks) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when it finds no knee; None says the same
        found = KneeLocator(ks, [criteria[k].inertia for k in ks], curve="convex", direction="decreasing").knee
    return None if found is None else int(found)


def _ranks(values: list[float], descending: bool) -> np.ndarray:
    """Competition ranks 1.. (equal values share the better rank)."""
    arr = -np.asarray(values) if descending else np.asarray(values)
    return np.array([1 + int((arr < v).sum()) for v in arr], dtype=np.float64)


def choose_k(
    criteria: dict[int, Criteria], *, min_share: float = 0.02, min_stability: float = 0.6
) -> tuple[int, str, dict[int, float]]:
    """The documented rule (module docstring): floors first, then the best mean rank.

    Returns:
        The chosen k, one sentence saying why, and the mean rank of every eligible k.
    """
    if not criteria:
        raise ValueError("no k to choose from")
    knee = knee_of(criteria)
    floors = f"smallest segment >= {min_share:.0%} and stability >= {min_stability}"
    eligible = [k for k, c in criteria.items() if c.smallest_share >= min_share and c.stability >= min_stability]
    relaxed = ""
    if not eligible:
        eligible = [k for k, c in criteria.items() if c.smallest_share >= min_share]
        floors, relaxed = f"smallest segment >= {min_share:.0%}", " (no k was stable enough)"
    if not eligible:
        eligible, floors, relaxed = sorted(criteria), "no floor", " (every k had a segment below the size floor)"
    eligible = sorted(eligible)
    cs = [criteria[k] for k in eligible]
    columns = [
        _ranks([c.silhouette for c in cs], descending=True),
        _ranks([c.calinski_harabasz for c in cs], descending=True),
        _ranks([c.davies_bouldin for c in cs], descending=False),
        _ranks([c.stability for c in cs], descending=True),
    ]
    names = "silhouette, Calinski-Harabasz, Davies-Bouldin, stability"
    if knee is not None:
        columns.append(_ranks([abs(k - knee) for k in eligible], descending=False))
        names += f" and distance to the inertia knee (k={knee})"
    mean_rank = np.mean(columns, axis=0)
    best = int(np.argmin(mean_rank))  # first minimum = smaller k on a tie
    chosen = eligible[best]
    reason = (
        f"k={chosen} has the best mean rank ({mean_rank[best]:.1f}) over {names} among the {len(eligible)} k "
        f"with {floors}{relaxed}"
    )
    return chosen, reason, {k: float(r) for k, r in zip(eligible, mean_rank, strict=True)}
