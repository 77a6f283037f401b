"""The RFM map as a second segmenter (``segstream train --segmenter rfm``).

Every marketer knows it: recency, frequency and monetary quintile scores and eleven named cells (see
:mod:`segstream.models.rfm`). It is deterministic and explainable, so it is both a segmenter a user may
prefer and the baseline K-Means must beat in the backtest. Segment ids are the fixed cell ids, the same in
every bundle, so a retrain never renumbers them; the quintile edges are stored in the bundle and applied
unchanged in the stream. The result is a :class:`~segstream.trainer.segmentation.SegmentationModel` like
K-Means', so the tree, the scoring path, the bundle and the stream need nothing special.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segstream.models.features import FEATURE_NAMES
from segstream.models.rfm import RFM_CELLS, RFMScorer, fit_rfm_edges
from segstream.models.scoring import PCAProjection
from segstream.trainer.k_choice import silhouettes
from segstream.trainer.naming import describe_segments
from segstream.trainer.segmentation import (
    CLUSTER_FEATURES,
    SegmentationError,
    SegmentationModel,
    feature_matrix,
    fit_projection,
)

RFM = "rfm"


def rfm_cells(features: pd.DataFrame) -> tuple[RFMScorer, np.ndarray]:
    """Fit the quintile edges on ``features`` and return the scorer and every customer's cell id."""
    x = feature_matrix(features)
    scorer = RFMScorer(fit_rfm_edges(x))
    return scorer, scorer.predict_segment(x)


def fit_rfm_segmentation(
    features: pd.DataFrame, seed: int = 0, *, variance_threshold: float = 0.90, silhouette_sample: int = 10_000
) -> SegmentationModel:
    """The RFM map fitted on a features table (``batch_features`` output)."""
    x = feature_matrix(features)
    if len(x) < 5:
        raise SegmentationError(f"{len(x)} customers are too few for quintile scores")
    scaler, pca, ratios_all, z = fit_projection(x, variance_threshold, seed)
    scorer = RFMScorer(fit_rfm_edges(x), PCAProjection(scaler, pca, CLUSTER_FEATURES))
    ids = scorer.predict_segment(x)
    labels = pd.Series(ids, index=features.index, name="segment")
    present = sorted(int(i) for i in np.unique(ids))
    sizes = {i: int((ids == i).sum()) for i in range(len(RFM_CELLS))}
    profiles = features[list(FEATURE_NAMES)].groupby(ids).median().reindex(range(len(RFM_CELLS)))
    population = features[list(FEATURE_NAMES)]
    descriptions = describe_segments(profiles.loc[present], population)
    for cell in set(range(len(RFM_CELLS))) - set(present):
        descriptions[cell] = "no training customer fell in this cell"
    profiles = profiles.loc[present]
    centroids = profiles[list(CLUSTER_FEATURES)].copy()
    centroids.index.name = "segment"
    rng = np.random.default_rng(seed)
    sample = rng.permutation(len(x))[: min(len(x), silhouette_sample)]
    dense = np.searchsorted(np.asarray(present), ids[sample])  # silhouettes wants labels 0..k-1
    silhouette = silhouettes(z[sample], [dense])[0]
    return SegmentationModel(
        scaler=scaler,
        pca=pca,
        kmeans=None,
        scorer=scorer,
        cluster_features=CLUSTER_FEATURES,
        k=len(present),
        k_reason=f"RFM map: {len(present)} of its {len(RFM_CELLS)} fixed cells hold training customers",
        silhouette=float(silhouette),
        inertia_by_k={},
        silhouette_by_k={},
        explained_variance_ratio=[float(v) for v in pca.explained_variance_ratio_],
        explained_variance_ratio_all=[float(v) for v in ratios_all],
        centroids=centroids,
        profiles=profiles,
        names=dict(scorer.names),
        sizes={i: n for i, n in sizes.items() if n > 0},
        labels=labels,
        used_ids=list(range(len(RFM_CELLS))),
        descriptions=descriptions,
        segmenter=RFM,
    )


def crosstab(segments: pd.Series, cells: np.ndarray) -> dict[str, dict[str, int]]:
    """Customers per (segment id, RFM cell name), JSON-ready: how K-Means segments sit on the RFM map."""
    table = pd.crosstab(segments.to_numpy(), np.asarray([RFM_CELLS[int(c)] for c in cells]))
    return {str(seg): {cell: int(n) for cell, n in row.items() if n} for seg, row in table.iterrows()}
