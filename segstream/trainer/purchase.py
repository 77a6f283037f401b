"""Future purchases: each customer's net spend over the next ``horizon_days`` (default 90).

Setup (calibration / holdout): the cutoff is the last event time minus the horizon. Features are computed
as of the cutoff with :func:`segstream.models.features.batch_features` (later events excluded), the target
is the sum of ``amount`` in ``(cutoff, cutoff + horizon]`` (returns count negative; no event = 0).
Customers with no event up to the cutoff have no features and are left out.

Evaluation: customers (not events) are split 75/25 with a fixed seed; a LinearRegression and a
HistGradientBoostingRegressor are fitted on the training customers and compared on the held-out ones
with the naive baseline "the next 90 days look like the last 90" (the ``spend_90d`` feature at the
cutoff). Metrics: RMSE and MAE per model.

Final model: the one of the two with the lower held-out RMSE, refitted on ALL customers (features at the
cutoff -> spend in the horizon). Scoring applies it to features as of the scoring time, predicting the
spend in the following ``horizon_days``. The linear model is scored with numpy
(:class:`~segstream.models.scoring.LinearPurchaseScorer`); the boosted trees through sklearn's batch
``predict`` (:class:`~segstream.models.scoring.EstimatorPurchaseScorer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from segstream.models.features import FEATURE_NAMES, batch_features
from segstream.models.scoring import EstimatorPurchaseScorer, LinearPurchaseScorer
from segstream.trainer.errors import TrainerError

LINEAR = "linear_regression"
TREES = "hist_gradient_boosting"
BASELINE = "baseline"
PURCHASE_FEATURES: tuple[str, ...] = FEATURE_NAMES
_BASELINE_FEATURE = "spend_90d"
_MIN_CUSTOMERS = 20


class PurchaseModelError(TrainerError):
    """The events cannot support the calibration/holdout split of the purchase models."""


@dataclass
class PurchaseModels:
    """The evaluated purchase models and the final one used for scoring.

    Attributes:
        metrics: ``metrics.purchase``: one ``{"rmse", "mae", "final"}`` dict per model and the baseline.
        final_name: Name of the model refitted on all customers.
        model: That refitted sklearn model.
        scorer: Its scorer (takes full FEATURE_NAMES rows).
        info: Cutoff, horizon and customer counts.
    """

    metrics: dict[str, dict[str, Any]]
    final_name: str
    model: Any
    scorer: LinearPurchaseScorer | EstimatorPurchaseScorer
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted net spend over the next horizon for full feature rows (FEATURE_NAMES order)."""
        return self.scorer.predict(x)


def calibration_holdout(events: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, pd.Series, pd.Timestamp]:
    """Features as of the cutoff, and each of those customers' net spend in the horizon after it."""
    if events.empty:
        raise PurchaseModelError("purchase models: the events table is empty")
    ts = pd.to_datetime(events["timestamp"], utc=True)
    cutoff = ts.max() - pd.Timedelta(days=horizon_days)
    if (ts <= cutoff).sum() == 0:
        raise PurchaseModelError(
            f"purchase models: no event on or before the cutoff {cutoff.isoformat()} "
            f"(history must be longer than the {horizon_days}-day horizon)"
        )
    features = batch_features(events, as_of=cutoff)
    after = (ts > cutoff).to_numpy()
    spend = events.loc[after, "amount"].groupby(events.loc[after, "customer_id"].astype(str)).sum()
    target = spend.reindex(features.index, fill_value=0.0).astype(np.float64)
    return features, target, cutoff


def _errors(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    err = pred - y
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "final": False}


def _make(name: str, seed: int) -> Any:
    return LinearRegression() if name == LINEAR else HistGradientBoostingRegressor(random_state=seed)


def fit_purchase_models(
    events: pd.DataFrame, horizon_days: int = 90, seed: int = 0, *, test_size: float = 0.25
) -> PurchaseModels:
    """Evaluate the purchase models against the baseline and refit the better one on all customers.

    Args:
        events: Clean events (``customer_id``, ``timestamp`` UTC, ``amount``).
        horizon_days: Prediction horizon (and the length of the holdout period).
        seed: Seed of the customer split and the boosted trees.
        test_size: Share of customers held out for the metrics.

    Returns:
        The :class:`PurchaseModels`.
    """
    features, target, cutoff = calibration_holdout(events, horizon_days)
    if len(features) < _MIN_CUSTOMERS:
        raise PurchaseModelError(
            f"purchase models: only {len(features)} customers have events before the cutoff "
            f"{cutoff.isoformat()}, need at least {_MIN_CUSTOMERS}"
        )
    x = features[list(PURCHASE_FEATURES)].to_numpy(dtype=np.float64)
    y = target.to_numpy()
    train, test = train_test_split(np.arange(len(x)), test_size=test_size, random_state=seed)
    metrics: dict[str, dict[str, Any]] = {}
    for name in (LINEAR, TREES):
        model = _make(name, seed).fit(x[train], y[train])
        metrics[name] = _errors(y[test], model.predict(x[test]))
    metrics[BASELINE] = _errors(y[test], x[test, PURCHASE_FEATURES.index(_BASELINE_FEATURE)])

    final_name = min((LINEAR, TREES), key=lambda n: metrics[n]["rmse"])
    metrics[final_name]["final"] = True
    final = _make(final_name, seed).fit(x, y)
    scorer: LinearPurchaseScorer | EstimatorPurchaseScorer = (
        LinearPurchaseScorer(final, PURCHASE_FEATURES)
        if final_name == LINEAR
        else EstimatorPurchaseScorer(final, PURCHASE_FEATURES)
    )
    info = {
        "cutoff": cutoff.isoformat(),
        "horizon_days": int(horizon_days),
        "customers": int(len(x)),
        "train_customers": int(len(train)),
        "test_customers": int(len(test)),
        "final_model": final_name,
    }
    return PurchaseModels(metrics, final_name, final, scorer, info)
