"""Segment names from centroids, and segment ids that stay stable across retrains.

Names: each centroid (in original feature units) is placed in the population by percentile rank per
feature (0 = lowest customer, 1 = highest). Every candidate name has a score in [0, 1] built from those
ranks (e.g. Champions = recent, frequent and high spend). Names are then assigned one per segment with
the Hungarian algorithm maximising the total score, so they are unique; ties are broken by the fixed order
of :data:`SEGMENT_NAMES` and of the segments. With more segments than names, the extra segments get a
numbered second use of a name ("Low value 2"), which is only chosen when every plain name is taken.

Ids: a retrain must not renumber segments that did not change. New and previous centroids are compared
in one space that does not depend on either model's PCA or K-Means: the original-unit centroids, put
through the fixed signed log1p and then standardised with the NEW scaler (so every feature counts in
units of its current spread). The Hungarian algorithm matches new to old centroids by Euclidean
distance; a matched new segment keeps the old id when its RMS distance per feature is at most
``max_match_distance`` (default 1.0, i.e. a standard deviation); any other new segment gets a fresh id
above every id used before. Without a previous model, ids count from 0 in order of decreasing centroid
``monetary``, so they do not depend on K-Means' arbitrary label order either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from segstream.models.scoring import signed_log1p

Ranks = Mapping[str, float]

# name -> score from percentile ranks r (recency: high rank = long since last purchase).
_SCORES: dict[str, Callable[[Ranks], float]] = {
    "Champions": lambda r: (3 * (1 - r["recency_days"]) + 2 * r["frequency"] + 2 * r["monetary"]) / 7,
    "Loyal": lambda r: (r["frequency"] + r["tenure_days"] + (1 - r["recency_days"])) / 3 - 0.05,
    "Big spenders": lambda r: (2 * r["aov"] + r["monetary"]) / 3,
    "New": lambda r: ((1 - r["tenure_days"]) * 2 + (1 - r["recency_days"])) / 3,
    "At risk": lambda r: (2 * r["recency_days"] + r["monetary"] + r["frequency"]) / 4,
    "Lost": lambda r: (2 * r["recency_days"] + (1 - r["monetary"]) + (1 - r["frequency"])) / 4 - 0.05,
    "Low value": lambda r: ((1 - r["monetary"]) + (1 - r["frequency"]) + (1 - r["aov"])) / 3,
}
SEGMENT_NAMES: tuple[str, ...] = tuple(_SCORES)
NAMING_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "monetary", "aov", "tenure_days")
# A second use of a name must lose to every free plain name.
_REUSE_PENALTY = 2.0


def percentile_ranks(centroids: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """Mid-rank of each centroid value among the population's values of the same feature, in [0, 1]."""
    out = pd.DataFrame(index=centroids.index, columns=centroids.columns, dtype=np.float64)
    for col in centroids.columns:
        pop = np.sort(population[col].to_numpy(dtype=np.float64))
        vals = centroids[col].to_numpy(dtype=np.float64)
        below = np.searchsorted(pop, vals, side="left")
        upto = np.searchsorted(pop, vals, side="right")
        out[col] = (below + upto) / 2.0 / max(len(pop), 1)
    return out


def name_scores(centroids: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """Score of every candidate name (columns) for every centroid (rows)."""
    missing = [f for f in NAMING_FEATURES if f not in centroids.columns]
    if missing:
        raise ValueError(f"naming needs centroid columns {missing}")
    ranks = percentile_ranks(centroids[list(NAMING_FEATURES)], population)
    rows = [[score(ranks.loc[i]) for score in _SCORES.values()] for i in ranks.index]
    return pd.DataFrame(rows, index=centroids.index, columns=list(SEGMENT_NAMES))


def name_segments(centroids: pd.DataFrame, population: pd.DataFrame) -> dict[int, str]:
    """Unique names for centroids (rows indexed by segment id, original feature units).

    Args:
        centroids: One row per segment with at least the :data:`NAMING_FEATURES` columns.
        population: The customers' features (same columns), for the percentile ranks.

    Returns:
        Segment id -> name; all names distinct.
    """
    ordered = centroids.sort_index()
    scores = name_scores(ordered, population).to_numpy()
    columns = list(SEGMENT_NAMES)
    uses = 1
    while len(columns) < len(ordered):
        uses += 1
        columns += [f"{n} {uses}" for n in SEGMENT_NAMES]
    tiled = np.tile(scores, (1, uses)) - np.repeat(np.arange(uses) * _REUSE_PENALTY, len(SEGMENT_NAMES))
    rows, cols = linear_sum_assignment(tiled, maximize=True)
    return {int(ordered.index[r]): columns[c] for r, c in zip(rows, cols, strict=True)}


def comparable(centroids: pd.DataFrame, scaler_mean: np.ndarray, scaler_scale: np.ndarray) -> np.ndarray:
    """Centroids in the retrain-comparable space: signed log1p, then standardised by the given scaler."""
    return (signed_log1p(centroids.to_numpy(dtype=np.float64)) - scaler_mean) / scaler_scale


def initial_ids(centroids: pd.DataFrame) -> dict[int, int]:
    """Label -> id for a first model: ids 0.. by decreasing centroid monetary (ties: by label)."""
    order = sorted(centroids.index, key=lambda lab: (-float(centroids.loc[lab, "monetary"]), lab))
    return {int(lab): i for i, lab in enumerate(order)}


def match_ids(
    new: np.ndarray,
    new_labels: Sequence[int],
    old: np.ndarray,
    old_ids: Sequence[int],
    order_key: Sequence[float],
    max_match_distance: float = 1.0,
    used_ids: Sequence[int] = (),
) -> dict[int, int]:
    """Give each new label the id of its Hungarian-matched old centroid, or a fresh id.

    Args:
        new: New centroids in the comparable space, one row per entry of ``new_labels``.
        new_labels: K-Means labels of the new centroids.
        old: Previous centroids in the same space, one row per entry of ``old_ids``.
        old_ids: Previous segment ids.
        order_key: One number per new label; unmatched labels get fresh ids in increasing key order.
        max_match_distance: Largest RMS distance per feature at which a match keeps the old id.
        used_ids: Ids used in earlier models too, never reused for a fresh segment.

    Returns:
        New label -> segment id (ids unique).
    """
    mapping: dict[int, int] = {}
    if len(old) and len(new):
        cost = np.sqrt(((new[:, None, :] - old[None, :, :]) ** 2).mean(axis=2))
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= max_match_distance:
                mapping[int(new_labels[r])] = int(old_ids[c])
    next_id = max([*old_ids, *used_ids], default=-1) + 1
    unmatched = [i for i, lab in enumerate(new_labels) if int(lab) not in mapping]
    for i in sorted(unmatched, key=lambda i: (order_key[i], int(new_labels[i]))):
        mapping[int(new_labels[i])] = next_id
        next_id += 1
    return mapping
