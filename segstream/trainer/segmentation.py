"""Customer segmentation: signed log1p -> StandardScaler -> PCA -> K-Means, with k chosen from the data.

Choosing k: :mod:`segstream.trainer.k_choice` computes five criteria for every k in ``k_range`` (default
4..8) on a fixed-seed sample (``search_sample`` rows) and applies its documented rule (size and stability
floors, then the best mean rank). ``k=`` forces a value (the criteria are still computed, for the
report). The final K-Means is fitted on all customers.

Components: PCA keeps the fewest components whose cumulative explained variance reaches
``variance_threshold`` (default 0.90), and at least two so the dashboard can draw a scatter.

Scoring goes through :class:`segstream.models.scoring.SegmentScorer` (numpy, equal to sklearn), and the
training labels are computed with it so they are exactly what the stream would say for the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from segstream.models.attributes import WideSegmentScorer
from segstream.models.features import FEATURE_NAMES
from segstream.models.rfm import RFMScorer
from segstream.models.scoring import SegmentScorer, signed_expm1, signed_log1p
from segstream.trainer.errors import TrainerError
from segstream.trainer.k_choice import DEFAULT_K_RANGE, Criteria, choose_k, compute_criteria, knee_of, silhouettes
from segstream.trainer.naming import comparable, describe_segments, initial_ids, match_ids, name_segments

# The features K-Means sees. The window counts and the CLV columns are left out: they are near-duplicates
# of these (spend_365d ~ monetary for most customers, clv_historical == monetary) and would give those
# directions double weight.
CLUSTER_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "tenure_days",
    "purchase_rate",
    "spend_365d",
    "returns_count",
)


class SegmentationError(TrainerError):
    """The features cannot be segmented (too few customers, missing columns, non-finite values)."""


@dataclass
class SegmentationModel:
    """A fitted segmentation and everything reported about it.

    Attributes:
        scaler, pca, kmeans: The fitted sklearn objects (no K-Means for the RFM map).
        scorer: The numpy scorer used everywhere at prediction time.
        cluster_features: The clustered features, in column order.
        k: Number of segments; ``k_reason`` says how it was chosen.
        silhouette: Silhouette of the final model on the fixed-seed sample.
        inertia_by_k, silhouette_by_k: The search curves (inertia on the search sample).
        criteria_by_k: Every criterion of every k searched; ``mean_rank_by_k`` the rule's mean ranks.
        explained_variance_ratio: Ratios of the kept components; ``explained_variance_ratio_all`` of all.
        centroids: Segment id -> centroid in original feature units (back through PCA, scaler, log).
        profiles: Segment id -> median of every feature over its members.
        names: Segment id -> name. sizes: segment id -> number of customers.
        labels: Segment id of every training customer (index customer_id).
        used_ids: Every segment id used by this model or an earlier one (fresh ids start above these).
    """

    scaler: StandardScaler
    pca: PCA
    kmeans: KMeans | None
    scorer: SegmentScorer | RFMScorer
    cluster_features: tuple[str, ...]
    k: int
    k_reason: str
    silhouette: float
    inertia_by_k: dict[int, float]
    silhouette_by_k: dict[int, float]
    explained_variance_ratio: list[float]
    explained_variance_ratio_all: list[float]
    centroids: pd.DataFrame
    profiles: pd.DataFrame
    names: dict[int, str]
    sizes: dict[int, int]
    labels: pd.Series
    used_ids: list[int] = field(default_factory=list)
    criteria_by_k: dict[int, Criteria] = field(default_factory=dict)
    mean_rank_by_k: dict[int, float] = field(default_factory=dict)
    knee: int | None = None
    descriptions: dict[int, str] = field(default_factory=dict)
    segmenter: str = "kmeans"
    outliers_left_out: int = 0

    @property
    def n_components(self) -> int:
        """Number of PCA components kept."""
        return len(self.explained_variance_ratio)

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.segmentation`` of the manifest (JSON-ready: plain numbers, string keys)."""
        return {
            "k": int(self.k),
            "k_reason": self.k_reason,
            "silhouette": float(self.silhouette),
            "inertia_by_k": {str(k): float(v) for k, v in self.inertia_by_k.items()},
            "silhouette_by_k": {str(k): float(v) for k, v in self.silhouette_by_k.items()},
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "n_components": int(self.n_components),
            "cluster_features": list(self.cluster_features),
            "sizes": {str(k): int(v) for k, v in self.sizes.items()},
            "segmenter": self.segmenter,
            "outliers_left_out_of_fit": int(self.outliers_left_out),
            "knee": self.knee,
            "criteria_by_k": {str(k): c.to_dict() for k, c in self.criteria_by_k.items()},
            "mean_rank_by_k": {str(k): float(v) for k, v in self.mean_rank_by_k.items()},
            "stability": {
                "method": "mean adjusted Rand index of the labels over bootstrap refits",
                "chosen": float(self.criteria_by_k[self.k].stability) if self.k in self.criteria_by_k else None,
                "by_k": {str(k): float(c.stability) for k, c in self.criteria_by_k.items()},
            },
            "names": {str(k): v for k, v in self.names.items()},
            "descriptions": {str(k): v for k, v in self.descriptions.items()},
        }


def _silhouette(z: np.ndarray, labels: np.ndarray) -> float:
    return silhouettes(z, [labels])[0]


# A namer turns (profiles, population, segment id per customer) into (names, descriptions).
Namer = Callable[[pd.DataFrame, pd.DataFrame, pd.Series], tuple[dict[int, str], dict[int, str]]]


def feature_matrix(features: pd.DataFrame, input_names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    names = list(input_names)
    missing = [f for f in names if f not in features.columns]
    if missing:
        raise SegmentationError(f"features table lacks column(s) {missing}")
    x = features[names].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise SegmentationError(f"feature {names[col]!r} is not finite for customer {features.index[row]!r}")
    return x


def _inliers(z: np.ndarray, outlier_z: float) -> np.ndarray:
    """Rows K-Means is fitted on: all but extreme outliers (any PCA coordinate beyond ``outlier_z`` sd).

    One customer who joined the day before the cutoff, or one wholesale buyer, is a point far from all
    others, and K-Means spends a centre on them: a segment of one. They are left out of the fit and then
    assigned to their nearest centre like everyone else, so scoring (and parity) does not change. Never
    more than 5% of rows are left out.
    """
    spread = z.std(axis=0)
    far = (np.abs(z - z.mean(axis=0)) / np.where(spread > 0, spread, 1.0)).max(axis=1)
    keep = far <= outlier_z
    if keep.mean() < 0.95:
        keep = far <= np.quantile(far, 0.95)
    return np.flatnonzero(keep)


def _smallest_share(kmeans: KMeans) -> float:
    counts = np.bincount(kmeans.labels_, minlength=kmeans.n_clusters)
    return float(counts.min() / max(counts.sum(), 1))


def fit_projection(
    x: np.ndarray,
    variance_threshold: float,
    seed: int,
    *,
    input_names: Sequence[str] = FEATURE_NAMES,
    cluster_features: Sequence[str] = CLUSTER_FEATURES,
    scale_groups: Sequence[Sequence[str]] = (),
) -> tuple[StandardScaler, PCA, np.ndarray, np.ndarray]:
    """signed log1p -> StandardScaler -> PCA on the clustered features of full rows.

    ``scale_groups``: sets of clustered columns (a categorical attribute's one-hot columns) scaled as one
    block: each column is centred and divided by the square root of the block's total variance, so the
    whole attribute weighs as much as one numeric feature, however many levels it has, and a rare level is
    not blown up to a many-sd outlier.

    Returns the scaler, the PCA (fewest components reaching ``variance_threshold``, at least two), the
    explained variance ratios of all components, and the customers' PCA coordinates.
    """
    names = list(input_names)
    clustered = list(cluster_features)
    cols = [names.index(f) for f in clustered]
    t = signed_log1p(np.ascontiguousarray(x[:, cols]))  # C order, as the scorer uses
    scaler = StandardScaler().fit(t)
    for group in scale_groups:
        pos = [clustered.index(c) for c in group]
        total = float(np.sum(scaler.var_[pos]))
        scaler.scale_[pos] = np.sqrt(total) if total > 0 else 1.0
    s = scaler.transform(t)
    ratios_all = PCA(svd_solver="full").fit(s).explained_variance_ratio_
    n_comp = int(np.searchsorted(np.cumsum(ratios_all), variance_threshold - 1e-12) + 1)
    n_comp = min(max(n_comp, 2), len(cols))
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit(s)
    return scaler, pca, ratios_all, pca.transform(s)


def fit_segmentation(
    features: pd.DataFrame,
    k_range: range = DEFAULT_K_RANGE,
    k: int | None = None,
    previous: SegmentationModel | None = None,
    seed: int = 0,
    *,
    variance_threshold: float = 0.90,
    search_sample: int = 20_000,
    silhouette_sample: int = 10_000,
    min_share: float = 0.02,
    min_stability: float = 0.6,
    resamples: int = 10,
    outlier_z: float = 5.0,
    n_init: int = 4,
    max_match_distance: float = 1.0,
    input_names: Sequence[str] = FEATURE_NAMES,
    cluster_features: Sequence[str] = CLUSTER_FEATURES,
    scale_groups: Sequence[Sequence[str]] = (),
    order_by: str = "monetary",
    namer: Namer | None = None,
) -> SegmentationModel:
    """Fit the segmentation on a features table (``batch_features`` output).

    Args:
        features: Float features indexed by customer_id with every FEATURE_NAMES column.
        k_range: Candidate numbers of segments.
        k: Force this number of segments instead of choosing one.
        previous: The previous bundle's model; matched segments keep its ids (see ``naming``).
        seed: Seed for sampling, K-Means and PCA.
        variance_threshold: Cumulative explained variance the kept PCA components must reach.
        search_sample: Rows the k search fits on (the final fit uses all rows).
        silhouette_sample: Rows the silhouettes are computed on.
        min_share: Smallest share of customers a segment may hold for its k to be eligible.
        min_stability: Smallest bootstrap stability (mean ARI) for a k to be eligible.
        resamples: Bootstrap refits per k for the stability.
        outlier_z: Customers farther than this many sd from the centre are left out of the K-Means fit
            (and then scored like everyone else); see ``_inliers``.
        n_init: K-Means restarts of the final fit.
        max_match_distance: See :func:`segstream.trainer.naming.match_ids`.
        input_names: The columns of a model input row (default the behaviour features; with customer
            attributes, the behaviour features then the encoded attributes, or the attributes alone).
        cluster_features: The clustered columns (default :data:`CLUSTER_FEATURES`).
        scale_groups: Column blocks scaled together (see :func:`fit_projection`).
        order_by: Clustered column whose decreasing centroid value numbers a first model's segments.
        namer: Names and describes the segments (default: from the behaviour profile, see ``naming``).

    Returns:
        The fitted :class:`SegmentationModel`.
    """
    input_names, cluster_features = tuple(input_names), tuple(cluster_features)
    wide = input_names != FEATURE_NAMES
    x = feature_matrix(features, input_names)
    n = len(x)
    smallest = k if k is not None else min(k_range, default=2)
    if k is not None and k < 1:
        raise SegmentationError(f"k must be at least 1, got {k}")
    if n < max(smallest, 2) + 1:
        raise SegmentationError(f"{n} customers are too few to segment into {smallest} segments")
    scaler, pca, ratios_all, z = fit_projection(x, variance_threshold, seed, input_names=input_names,
                                                cluster_features=cluster_features, scale_groups=scale_groups)

    rng = np.random.default_rng(seed)
    fit_rows = _inliers(z, outlier_z)
    sample = fit_rows[rng.permutation(len(fit_rows))[: min(len(fit_rows), search_sample)]]
    sil_rows = min(len(sample), silhouette_sample)
    searched = sorted({*k_range, *([k] if k is not None else [])})
    criteria = compute_criteria(z[sample], searched, seed, silhouette_rows=sil_rows, resamples=resamples)
    mean_rank: dict[int, float] = {}
    if k is not None:
        chosen, reason = k, "forced"
    elif not criteria:
        raise SegmentationError(f"no k in {list(k_range)} fits {n} customers")
    else:
        chosen, reason, mean_rank = choose_k(criteria, min_share=min_share, min_stability=min_stability)
    inertia_by_k = {kk: c.inertia for kk, c in criteria.items()}
    silhouette_by_k = {kk: c.silhouette for kk, c in criteria.items()}

    kmeans = KMeans(n_clusters=chosen, n_init=n_init, random_state=seed).fit(z[fit_rows])
    if k is None and _smallest_share(kmeans) < min_share:
        # The floor was checked on the search fit; the final fit can still leave a sliver. Then the next k
        # by mean rank whose final fit holds the floor is taken, and the reason says so.
        tried = [chosen]
        for alternative in sorted(mean_rank, key=lambda kk: (mean_rank[kk], kk)):
            if alternative in tried:
                continue
            refit = KMeans(n_clusters=alternative, n_init=n_init, random_state=seed).fit(z[fit_rows])
            if _smallest_share(refit) >= min_share:
                reason += (f"; the final fit of k={', '.join(map(str, tried))} left a segment under "
                           f"{min_share:.0%}, so k={alternative}")  # fmt: skip
                chosen, kmeans = alternative, refit
                break
            tried.append(alternative)
        else:
            reason += f"; no k keeps every segment at {min_share:.0%} of customers in the final fit"
    raw_labels = list(range(chosen))
    back = signed_expm1(scaler.inverse_transform(pca.inverse_transform(kmeans.cluster_centers_)))
    by_label = pd.DataFrame(back, index=raw_labels, columns=list(cluster_features))

    label_to_id = _assign_ids(by_label, scaler, previous, max_match_distance, order_by)
    id_of = np.array([label_to_id[lab] for lab in raw_labels], dtype=np.int64)
    centroids = by_label.set_axis(id_of, axis=0).sort_index()
    centroids.index.name = "segment"
    scorer = (WideSegmentScorer(scaler, pca, kmeans, cluster_features, id_of, {}, input_names) if wide
              else SegmentScorer(scaler, pca, kmeans, CLUSTER_FEATURES, id_of, {}))  # fmt: skip

    labels = scorer.predict_labels(x)
    silhouette = _silhouette(z[sample[:sil_rows]], labels[sample[:sil_rows]])
    ids = pd.Series(id_of[labels], index=features.index, name="segment")
    sizes = {int(i): int((ids == i).sum()) for i in centroids.index}
    profiles = features[list(input_names)].groupby(ids.to_numpy()).median().reindex(centroids.index)
    # A segment K-Means left empty on all rows (possible only in degenerate data) is named by its centroid.
    profiles = profiles.fillna(centroids.reindex(columns=profiles.columns)).fillna(0.0)
    population = features[list(input_names)]
    if namer is None:
        names = name_segments(profiles, population, previous.names if previous else None)
        descriptions = describe_segments(profiles, population)
    else:
        names, descriptions = namer(profiles, population, ids)
    scorer.names = dict(names)
    used = sorted({*map(int, id_of), *(previous.used_ids if previous else [])})
    return SegmentationModel(
        scaler=scaler,
        pca=pca,
        kmeans=kmeans,
        scorer=scorer,
        cluster_features=cluster_features,
        k=chosen,
        k_reason=reason,
        silhouette=silhouette,
        inertia_by_k=inertia_by_k,
        silhouette_by_k=silhouette_by_k,
        explained_variance_ratio=[float(v) for v in pca.explained_variance_ratio_],
        explained_variance_ratio_all=[float(v) for v in ratios_all],
        centroids=centroids,
        profiles=profiles,
        names=names,
        sizes=sizes,
        labels=ids,
        used_ids=used,
        criteria_by_k=criteria,
        mean_rank_by_k=mean_rank,
        knee=knee_of(criteria),
        descriptions=descriptions,
        outliers_left_out=int(n - len(fit_rows)),
    )


def _assign_ids(
    by_label: pd.DataFrame,
    scaler: StandardScaler,
    previous: SegmentationModel | None,
    max_match_distance: float,
    order_by: str = "monetary",
) -> dict[int, int]:
    """Label -> stable id: Hungarian match against the previous centroids, else by ``order_by``."""
    if previous is None:
        return initial_ids(by_label, order_by)
    old = previous.centroids
    new_z = comparable(by_label, scaler.mean_, scaler.scale_)
    order_key = list(-by_label[order_by].to_numpy())
    if list(old.columns) != list(by_label.columns):
        # Different clustered features: nothing is comparable, every segment is new.
        return match_ids(
            new_z, list(by_label.index), np.empty((0, new_z.shape[1])), [], order_key, used_ids=previous.used_ids
        )
    old_z = comparable(old, scaler.mean_, scaler.scale_)
    return match_ids(
        new_z,
        list(by_label.index),
        old_z,
        [int(i) for i in old.index],
        order_key,
        max_match_distance,
        used_ids=previous.used_ids,
    )
