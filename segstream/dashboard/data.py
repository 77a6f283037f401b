"""Where the dashboard's bundle comes from, and the cached readers every page shares.

The bundle path is chosen, in order, by the sidebar field, ``SEGSTREAM_DASHBOARD_BUNDLE`` (set by
``segstream dashboard --bundle DIR``) and ``<SEGSTREAM_MODEL_ROOT>/current``. The readable side of the bundle
(tables and metrics, :class:`~segstream.viz.bundle_tables.BundleTables`) never unpickles anything; only the
What-if page loads the pickled models, through the verifying loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segstream.models.errors import SegstreamError
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC
from segstream.models.scoring import PathStep
from segstream.settings import Settings
from segstream.viz.bundle_tables import BundleTables

BUNDLE_ENV = "SEGSTREAM_DASHBOARD_BUNDLE"
OFFLINE_ENV = "SEGSTREAM_DASHBOARD_OFFLINE"  # set by --no-live: bundle only, no connection attempts
SEGMENTATION, CLASSIFIER, PURCHASE = "segmentation", "classifier", "purchase"


def default_bundle_path(settings: Settings, environ: dict[str, str] | None = None) -> str:
    """The bundle to show when the user has not typed one: the CLI's ``--bundle`` or the current pointer."""
    env = os.environ if environ is None else environ
    chosen = env.get(BUNDLE_ENV, "").strip()
    return chosen or str(settings.models.root / "current")


def open_tables(path: str | Path) -> BundleTables:
    """Verify and open a bundle's readable side.

    Raises:
        DashboardError: The path is empty, missing, not a bundle, or the bundle fails verification; the
            message names the path and the failed check.
    """
    from segstream.dashboard.errors import DashboardError

    text = str(path).strip()
    if not text:
        raise DashboardError("no bundle given: pass --bundle DIR or promote a bundle to <models root>/current")
    target = Path(text).expanduser()
    if not target.exists():
        raise DashboardError(f"bundle directory {target} does not exist")
    if not target.is_dir():
        raise DashboardError(f"{target} is a file, not a bundle directory")
    try:
        return BundleTables.open(target)
    except SegstreamError as exc:
        raise DashboardError(f"{target} is not a usable bundle: {exc}") from exc


@dataclass(frozen=True)
class Models:
    """The unpickled models of a bundle, behind the few calls the What-if page makes.

    Attributes:
        version: The bundle version.
        segmentation: ``SegmentationModel`` (its ``scorer`` is a numpy SegmentScorer).
        classifier: ``ClassifierModel`` (its ``scorer`` is a numpy TreeScorer with ``decision_path``).
        purchase: The purchase model (``predict(full feature rows)`` -> spend over the next 90 days).
    """

    version: str
    segmentation: Any
    classifier: Any
    purchase: Any

    @property
    def names(self) -> dict[int, str]:
        """Segment id -> name."""
        return {int(k): str(v) for k, v in self.segmentation.names.items()}

    def kmeans_segment(self, row: np.ndarray) -> int:
        """K-Means segment of one full feature row."""
        return int(self.segmentation.scorer.predict_segment(_row(row))[0])

    def tree_segment(self, row: np.ndarray) -> int:
        """The decision tree's segment of one full feature row."""
        return int(self.classifier.scorer.predict(_row(row))[0])

    def tree_path(self, row: np.ndarray) -> list[PathStep]:
        """The tree's decisions for one row, root first."""
        return list(self.classifier.scorer.decision_path(_row(row)))

    def pca(self, row: np.ndarray) -> tuple[float, float]:
        """The row's position on the PCA plot."""
        coords = self.segmentation.scorer.project_pca(_row(row))
        return float(coords[0, 0]), float(coords[0, 1])

    def predicted_spend(self, row: np.ndarray) -> float | None:
        """Predicted spend over the purchase horizon, or None when the bundle has no purchase model."""
        if self.purchase is None:
            return None
        return float(np.asarray(self.purchase.predict(_row(row)), dtype=np.float64).reshape(-1)[0])


def load_models(path: str | Path, settings: Settings) -> Models:
    """Verify, then unpickle, the bundle's models (feature hash and signature checked first).

    Raises:
        DashboardError: Verification or unpickling failed, or an artifact is missing.
    """
    from segstream.dashboard.errors import DashboardError
    from segstream.models.bundle import load_bundle

    key = settings.models.signing_key
    try:
        loaded = load_bundle(
            Path(path), expected_feature_hash=FEATURE_SPEC.hash,
            signing_key=key.get_secret_value().encode() if key else None,
        )  # fmt: skip
        purchase = loaded.artifacts.get(PURCHASE)
        return Models(loaded.version, loaded.artifact(SEGMENTATION), loaded.artifact(CLASSIFIER), purchase)
    except SegstreamError as exc:
        raise DashboardError(f"cannot load the models of {path}: {exc}") from exc


def feature_row(values: dict[str, float]) -> np.ndarray:
    """A (1, n) feature row in FEATURE_NAMES order from a name -> value mapping (missing names are 0)."""
    return np.array([[float(values.get(name, 0.0)) for name in FEATURE_NAMES]], dtype=np.float64)


def _row(row: np.ndarray) -> np.ndarray:
    return np.asarray(row, dtype=np.float64).reshape(1, -1)
