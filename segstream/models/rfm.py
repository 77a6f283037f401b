"""The classic marketing RFM map as a deterministic segmenter, identical in batch and in the stream.

Why a rule beside the learned K-Means segments: marketing teams already know the RFM cells ("Champions",
"At risk", ...) and what to do with each, and a rule needs no training beyond twelve quantiles, so it is
easy to explain and cannot drift between retrains except through its edges.

Rule:

1. **Edges.** Over the training customers, the four interior quintile edges (20/40/60/80 %,
   ``np.quantile(method="linear")``) of ``recency_days``, ``frequency`` and ``monetary``.
2. **Scores 1..5.** Frequency and monetary score ``1 + #(edges < value)``; recency scores
   ``5 - #(edges < recency)``, so the most recent customers score 5. Each bin is closed on the right
   (``e[i-1] < v <= e[i]``): a value equal to an edge falls in the bin below the edge. For F and M that is
   the lower score, so a heavily tied feature does not inflate scores (when 60 % of customers bought once,
   the edges are ``[1, 1, 1, 2]`` and every one-time buyer scores F=1, not F=4); for recency it is the more
   recent bin. The stream applies the same edges row by row, so a customer's cell never depends on which
   other customers share its batch.
3. **Cell.** ``FM = floor((F + M) / 2 + 0.5)`` (round half up, in integers), and the cell is
   :data:`RFM_GRID` ``[R - 1][FM - 1]``. The segment id of a cell is its index in :data:`RFM_CELLS`, fixed
   by this module rather than by training, so ids are stable across retrains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from segstream.models.errors import FeatureSpecError
from segstream.models.scoring import PCAProjection, _full_matrix, _select, column_indices

RFM_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "monetary")

RFM_CELLS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "Recent",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose",
    "Hibernating",
    "Lost",
)

DEFAULT_QUANTILES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)

# RFM_GRID[R - 1][FM - 1], FM columns 1..5 left to right. The reasoning: recency says whether the customer
# is still with us, FM says how much they are worth. Recent and valuable -> Champions; recent but still
# light -> Recent / Promising / Potential loyalist as FM grows; valuable and fairly recent -> Loyal;
# middling on both -> Need attention, sliding to About to sleep when FM is low; lapsed but once valuable
# -> At risk, and Can't lose for the very best of them (win them back first); lapsed and light ->
# Hibernating, and Lost at the bottom corner.
RFM_GRID: tuple[tuple[str, ...], ...] = (
    ("Lost", "Lost", "Hibernating", "At risk", "Can't lose"),  # R = 1
    ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose"),  # R = 2
    ("About to sleep", "Need attention", "Need attention", "Loyal", "Loyal"),  # R = 3
    ("Promising", "Potential loyalist", "Potential loyalist", "Loyal", "Champions"),  # R = 4
    ("Recent", "Promising", "Potential loyalist", "Champions", "Champions"),  # R = 5
)

# The grid as segment ids, looked up with one fancy-indexing operation per batch.
_GRID_IDS = np.array([[RFM_CELLS.index(cell) for cell in row] for row in RFM_GRID], dtype=np.int64)
_N_EDGES = 4


@dataclass(frozen=True, eq=False)
class RFMEdges:
    """The four interior quintile edges of recency, frequency and monetary (float64, non-decreasing).

    ``eq=False`` because numpy arrays have no single truth value; compare with :meth:`to_dict`.
    """

    recency: np.ndarray
    frequency: np.ndarray
    monetary: np.ndarray

    def __post_init__(self) -> None:
        """Refuse edges that would make a score meaningless (wrong count, unsorted, non-finite)."""
        for name in ("recency", "frequency", "monetary"):
            arr = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.shape != (_N_EDGES,) or not np.isfinite(arr).all() or np.any(np.diff(arr) < 0):
                raise ValueError(f"RFM {name} edges must be {_N_EDGES} finite non-decreasing numbers, got {arr}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready edges, as stored in a bundle manifest."""
        return {
            "recency": [float(v) for v in self.recency],
            "frequency": [float(v) for v in self.frequency],
            "monetary": [float(v) for v in self.monetary],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> RFMEdges:
        """Edges back from :meth:`to_dict` output (e.g. a bundle manifest)."""
        return cls(
            recency=np.asarray(data["recency"], dtype=np.float64),
            frequency=np.asarray(data["frequency"], dtype=np.float64),
            monetary=np.asarray(data["monetary"], dtype=np.float64),
        )


def _checked_columns(x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The R, F, M columns of a full feature matrix; FeatureSpecError names the first non-finite one."""
    sub = _select(x, columns)
    if not np.isfinite(sub).all():
        bad = int(np.argwhere(~np.isfinite(sub))[0][1])
        raise FeatureSpecError(f"feature {RFM_FEATURES[bad]!r} has a non-finite value")
    return sub


def fit_rfm_edges(x: np.ndarray, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> RFMEdges:
    """Quintile edges of recency, frequency and monetary over the training rows.

    Args:
        x: Full feature matrix (n, len(FEATURE_NAMES)) of the training customers, n >= 1.
        quantiles: Four strictly increasing levels in [0, 1]; four because the map is a 5x5 grid.

    Raises:
        ValueError: No rows, or unusable quantiles.
        FeatureSpecError: Wrong shape, or a non-finite R/F/M value.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    if q.shape != (_N_EDGES,) or not ((q >= 0) & (q <= 1)).all() or np.any(np.diff(q) <= 0):
        raise ValueError(f"quantiles must be {_N_EDGES} strictly increasing levels in [0, 1], got {list(quantiles)}")
    arr = np.asarray(x)
    if arr.size == 0 and (arr.ndim < 2 or arr.shape[0] == 0):
        raise ValueError("cannot fit RFM edges on an empty feature matrix (no customers)")
    sub = _checked_columns(arr, column_indices(RFM_FEATURES))
    edges = np.quantile(sub, q, axis=0, method="linear")  # (4, 3)
    # Linear interpolation is monotone in exact arithmetic; the accumulate guards a 1-ulp rounding wobble
    # so the edges stay sorted for searchsorted (a no-op on every real input).
    edges = np.maximum.accumulate(edges, axis=0)
    return RFMEdges(recency=edges[:, 0], frequency=edges[:, 1], monetary=edges[:, 2])


class RFMScorer:
    """R, F, M scores and RFM-map cells of full feature rows, from fitted :class:`RFMEdges`.

    A plain picklable object holding numpy arrays only, like the scorers in ``scoring.py``.

    Attributes:
        edges: The fitted edges.
        feature_names: The features read, in score column order (R, F, M).
        names: Segment id -> cell name, for all 11 cells.
    """

    feature_names: tuple[str, ...] = RFM_FEATURES

    def __init__(self, edges: RFMEdges, projection: PCAProjection | None = None) -> None:
        """Keep the edges and the column positions of recency, frequency and monetary.

        ``projection`` places customers on the same 2-D map K-Means bundles draw (the dashboard's scatter).
        """
        self.edges = edges
        self.columns = column_indices(self.feature_names)
        self.names: dict[int, str] = dict(enumerate(RFM_CELLS))
        self.projection = projection

    def project_pca(self, x: np.ndarray) -> np.ndarray:
        """The customers' first two PCA coordinates (zeros without a projection)."""
        if self.projection is None:
            return np.zeros((len(_full_matrix(x)), 2))
        return self.projection.project_pca(x)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """R, F, M scores (int64, each 1..5) of full feature rows, shape (n, 3)."""
        sub = _checked_columns(x, self.columns)
        # side="left" counts edges strictly below the value: a value on an edge takes the bin below it.
        below_r = np.searchsorted(self.edges.recency, sub[:, 0], side="left")
        below_f = np.searchsorted(self.edges.frequency, sub[:, 1], side="left")
        below_m = np.searchsorted(self.edges.monetary, sub[:, 2], side="left")
        return np.column_stack([5 - below_r, 1 + below_f, 1 + below_m]).astype(np.int64)

    def predict_segment(self, x: np.ndarray) -> np.ndarray:
        """RFM cell ids (int64, indices into RFM_CELLS) of full feature rows, shape (n,)."""
        s = self.scores(x)
        fm = (s[:, 1] + s[:, 2] + 1) // 2  # floor((F + M) / 2 + 0.5) without floats
        return _GRID_IDS[s[:, 0] - 1, fm - 1]

    def cell_names(self, ids: np.ndarray) -> list[str]:
        """Names of the given cell ids."""
        return [self.names[int(i)] for i in np.asarray(ids).reshape(-1)]

    def edges_dict(self) -> dict[str, list[float]]:
        """The edges as JSON-ready lists of floats, for a bundle manifest."""
        return self.edges.to_dict()

    def describe_rule(self) -> str:
        """One paragraph explaining the rule and its fitted edges, for a report."""

        def fmt(arr: np.ndarray) -> str:
            return ", ".join(f"{v:.6g}" for v in arr)

        return (
            "Customers are placed on the classic RFM map. Recency (days since the last purchase), frequency "
            "(number of purchases) and monetary (net spend) are each scored 1 to 5 against the quintile edges "
            f"of the training customers: recency [{fmt(self.edges.recency)}], frequency "
            f"[{fmt(self.edges.frequency)}], monetary [{fmt(self.edges.monetary)}]. Frequency and monetary "
            "score 1 plus the number of edges strictly below the value, so a value equal to an edge takes the "
            "lower score; recency scores 5 minus the number of edges strictly below it, so the most recent "
            "customers score 5. F and M are averaged into an FM score (rounded half up), and the (R, FM) pair "
            "picks one of 11 cells from a fixed 5x5 grid: recent, high-value customers are Champions, "
            "high-value customers who have lapsed are Can't lose, and lapsed low-value customers are Lost. "
            "The same edges score every customer, in batch and in the stream."
        )
