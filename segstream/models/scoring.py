"""Vectorised numpy scorers for the trained models: the stream's hot path and batch ``score``.

Each scorer is a plain picklable object holding numpy arrays copied out of the fitted scikit-learn
estimators; calling it imports nothing from scikit-learn and skips sklearn's per-call validation
(100-450 us a call), so a micro-batch of rows costs a few numpy operations.

Exactness: the scorers repeat sklearn's arithmetic operation by operation, so labels are equal, not just
close (the unit tests check 100k rows):

* StandardScaler: ``(x - mean_) / scale_``.
* PCA (sklearn >= 1.5): ``x @ components_.T - mean_ @ components_.T`` (centring after the projection).
* KMeans.predict: argmin over ``||c||^2 - 2 x.c`` (sklearn drops ``||x||^2``; first minimum wins). Both
  sides compute ``x.c`` with a BLAS dot product; only if two libraries summed a dot product in a different
  order could a row whose two nearest centres are within ~1e-12 relative of each other get the other
  label. Such a row is equidistant for every practical purpose.
* DecisionTreeClassifier.predict: sklearn casts X to float32 first and then compares
  ``float32(x) <= threshold`` in double; so does :class:`TreeScorer`. NaN follows ``missing_go_to_left``.
* LinearRegression.predict: ``x @ coef_ + intercept_``.

Every scorer takes the full feature matrix ``(n, len(FEATURE_NAMES))`` in :data:`FEATURE_NAMES` order and
picks its own columns, so callers never need to know which features a model uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from segstream.models.errors import FeatureSpecError
from segstream.models.features import FEATURE_NAMES


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: tames heavy right tails and keeps negative spend (returns) negative."""
    return np.sign(x) * np.log1p(np.abs(x))


def signed_expm1(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`signed_log1p`."""
    return np.sign(y) * np.expm1(np.abs(y))


def column_indices(names: Sequence[str]) -> np.ndarray:
    """Positions of ``names`` in :data:`FEATURE_NAMES` (raises FeatureSpecError for an unknown name)."""
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise FeatureSpecError(f"unknown feature name(s) {unknown}; known: {list(FEATURE_NAMES)}")
    return np.array([FEATURE_NAMES.index(n) for n in names], dtype=np.intp)


def _full_matrix(x: np.ndarray) -> np.ndarray:
    """Check and return a 2-D float64 feature matrix with one column per FEATURE_NAMES entry."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != len(FEATURE_NAMES):
        raise FeatureSpecError(
            f"feature matrix must have shape (n, {len(FEATURE_NAMES)}) in FEATURE_NAMES order, got {arr.shape}"
        )
    return arr


def _select(x: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The model's columns as a C-contiguous copy.

    Layout matters for exactness: BLAS may sum a dot product in a different order for a Fortran-ordered
    operand, so every scorer (and the trainer, before fitting) works on C-ordered column subsets.
    """
    return np.ascontiguousarray(_full_matrix(x)[:, columns])


class PCAProjection:
    """signed log1p -> StandardScaler -> PCA of full feature rows: the segment map's coordinates.

    K-Means scores in this space; the RFM map does not, but the dashboard still draws its customers on it.
    """

    def __init__(self, scaler: Any, pca: Any, feature_names: Sequence[str]) -> None:
        """Copy the parameters out of a fitted sklearn StandardScaler and PCA."""
        self.feature_names = tuple(feature_names)
        self.columns = column_indices(self.feature_names)
        self.scaler_mean = np.array(scaler.mean_, dtype=np.float64)
        self.scaler_scale = np.array(scaler.scale_, dtype=np.float64)
        self.components = np.ascontiguousarray(pca.components_, dtype=np.float64)
        # Same expression sklearn evaluates on every transform call, done once.
        self.mean_projection = np.reshape(pca.mean_, (1, -1)) @ self.components.T
        self.whiten_scale: np.ndarray | None = None
        if pca.whiten:
            scale = np.sqrt(pca.explained_variance_)
            scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
            self.whiten_scale = scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        """PCA coordinates (n, n_components) of full feature rows."""
        sub = _select(x, self.columns)
        if not np.isfinite(sub).all():
            bad = int(np.argwhere(~np.isfinite(sub))[0][1])
            raise FeatureSpecError(f"feature {self.feature_names[bad]!r} has a non-finite value")
        scaled = (signed_log1p(sub) - self.scaler_mean) / self.scaler_scale
        projected = scaled @ self.components.T
        projected -= self.mean_projection
        if self.whiten_scale is not None:
            projected /= self.whiten_scale
        return projected

    def project_pca(self, x: np.ndarray) -> np.ndarray:
        """The first two PCA coordinates, shape (n, 2) (a zero column if the model kept only one)."""
        z = self.transform(x)
        if z.shape[1] >= 2:
            return np.ascontiguousarray(z[:, :2])
        return np.column_stack([z[:, 0], np.zeros(len(z))])


class SegmentScorer(PCAProjection):
    """signed log1p -> StandardScaler -> PCA -> nearest K-Means centre -> stable segment id.

    Attributes:
        feature_names: The clustered features (a subset of FEATURE_NAMES), in model column order.
        label_to_id: ``label_to_id[kmeans_label]`` is the stable segment id.
        names: Segment id -> human name.
    """

    def __init__(
        self,
        scaler: Any,
        pca: Any,
        kmeans: Any,
        feature_names: Sequence[str],
        label_to_id: Sequence[int] | np.ndarray,
        names: Mapping[int, str],
    ) -> None:
        """Copy the parameters out of fitted sklearn StandardScaler, PCA and KMeans objects."""
        super().__init__(scaler, pca, feature_names)
        self.centers = np.ascontiguousarray(kmeans.cluster_centers_, dtype=np.float64)
        # sklearn's row_norms(squared=True) is this einsum.
        self.center_sq_norms = np.einsum("ij,ij->i", self.centers, self.centers)
        self.label_to_id = np.asarray(label_to_id, dtype=np.int64)
        self.names = {int(k): str(v) for k, v in names.items()}

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        """Raw K-Means labels (equal to ``kmeans.predict(pca.transform(scaler.transform(...)))``)."""
        z = self.transform(x)
        distances = self.center_sq_norms - 2.0 * (z @ self.centers.T)
        return np.argmin(distances, axis=1)

    def predict_segment(self, x: np.ndarray) -> np.ndarray:
        """Stable segment ids (int64) of full feature rows, shape (n,)."""
        return self.label_to_id[self.predict_labels(x)]

    def segment_names(self, ids: np.ndarray) -> list[str]:
        """Names of the given segment ids."""
        return [self.names[int(i)] for i in ids]


class PathStep(NamedTuple):
    """One decision on a row's way from the root to its leaf."""

    feature: str
    threshold: float
    direction: str  # "<=" (went left) or ">" (went right)
    value: float  # the row's value of ``feature``


def explain_path(steps: Sequence[PathStep]) -> str:
    """A decision path in words a person reads: ``"recency_days 140 > 120 and frequency 2 <= 3"``."""
    return " and ".join(f"{st.feature} {st.value:.4g} {st.direction} {st.threshold:.4g}" for st in steps)


class TreeScorer:
    """DecisionTreeClassifier.predict from the ``tree_`` arrays, vectorised one tree level at a time."""

    def __init__(self, tree: Any, feature_names: Sequence[str], columns: np.ndarray | None = None) -> None:
        """Copy the node arrays of a fitted DecisionTreeClassifier trained on ``feature_names`` columns
        (``columns``: their positions in an input row; default: in FEATURE_NAMES)."""
        t = tree.tree_
        self.feature_names = tuple(feature_names)
        self.columns = column_indices(self.feature_names) if columns is None else columns
        self.children_left = np.array(t.children_left, dtype=np.intp)
        self.children_right = np.array(t.children_right, dtype=np.intp)
        self.feature = np.maximum(np.array(t.feature, dtype=np.intp), 0)  # leaves hold -2; never read
        self.threshold = np.array(t.threshold, dtype=np.float64)
        missing = getattr(t, "missing_go_to_left", None)
        n_nodes = len(self.threshold)
        self.missing_go_to_left = np.zeros(n_nodes, dtype=bool) if missing is None else np.array(missing, dtype=bool)
        self.value = np.array(t.value[:, 0, :], dtype=np.float64)
        self.classes = np.array(tree.classes_)
        # argmax per node, first maximum wins, as in sklearn's predict.
        self.node_class = self.classes[np.argmax(self.value, axis=1)]
        self.max_depth = int(t.max_depth)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """Checked input rows (full FEATURE_NAMES rows here; a wider scorer overrides it)."""
        return _full_matrix(x)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Leaf index of every row (float32 comparisons, as sklearn)."""
        sub = np.ascontiguousarray(self._rows(x)[:, self.columns]).astype(np.float32)
        node = np.zeros(len(sub), dtype=np.intp)
        active = np.arange(len(sub))
        for _ in range(self.max_depth + 1):
            nodes = node[active]
            inner = self.children_left[nodes] != -1
            active, nodes = active[inner], nodes[inner]
            if len(active) == 0:
                break
            vals = sub[active, self.feature[nodes]]
            go_left = np.where(np.isnan(vals), self.missing_go_to_left[nodes], vals <= self.threshold[nodes])
            node[active] = np.where(go_left, self.children_left[nodes], self.children_right[nodes])
        return node

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class (segment id) of every row."""
        return self.node_class[self.apply(x)]

    def decision_path(self, row: np.ndarray) -> list[PathStep]:
        """The decisions one row (full feature vector) passes from the root to its leaf."""
        full = self._rows(row)
        if full.shape[0] != 1:
            raise FeatureSpecError(f"decision_path explains one row, got {full.shape[0]}")
        sub = full[0, self.columns].astype(np.float32)
        steps: list[PathStep] = []
        node = 0
        while self.children_left[node] != -1:
            f = int(self.feature[node])
            v = sub[f]
            left = bool(self.missing_go_to_left[node]) if np.isnan(v) else bool(v <= self.threshold[node])
            steps.append(
                PathStep(
                    self.feature_names[f],
                    float(self.threshold[node]),
                    "<=" if left else ">",
                    float(full[0, self.columns[f]]),
                )
            )
            node = int(self.children_left[node] if left else self.children_right[node])
        return steps


class LinearPurchaseScorer:
    """LinearRegression.predict as ``x @ coef_ + intercept_`` on the model's feature columns."""

    def __init__(self, model: Any, feature_names: Sequence[str]) -> None:
        """Copy coef_/intercept_ of a fitted single-output LinearRegression."""
        self.feature_names = tuple(feature_names)
        self.columns = column_indices(self.feature_names)
        self.coef = np.array(model.coef_, dtype=np.float64).reshape(-1)
        self.intercept = float(model.intercept_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted spend of every row."""
        return _select(x, self.columns) @ self.coef + self.intercept


class EstimatorPurchaseScorer:
    """Any fitted regressor with ``predict`` (e.g. a tree ensemble), called once per batch."""

    def __init__(self, model: Any, feature_names: Sequence[str]) -> None:
        """Wrap ``model``, trained on a numpy matrix of the ``feature_names`` columns."""
        self.model = model
        self.feature_names = tuple(feature_names)
        self.columns = column_indices(self.feature_names)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted spend of every row."""
        return np.asarray(self.model.predict(_select(x, self.columns)), dtype=np.float64)
