"""Future purchases: each customer's net spend over the next ``horizon_days`` (default 90).

Setup (calibration / holdout): the cutoff is the last event time minus the horizon. Features are computed
as of the cutoff with :func:`segstream.models.features.batch_features` (later events excluded), the target
is the sum of ``amount`` in ``(cutoff, cutoff + horizon]`` (returns count negative; no event = 0).
Customers with no event up to the cutoff have no features and are left out.

Evaluation: forward in time when the history is long enough: every model is fitted on features at
``cutoff - horizon`` -> spend up to the cutoff, and judged on features at the cutoff -> spend in the
horizon (the way it is used: features now, spend later). With a shorter history, customers are split 75/25
with a fixed seed instead. Five models are compared with two baselines:

- ``linear_regression`` and ``hist_gradient_boosting`` on the features;
- ``decision_tree``: one regression tree on the features (depth at most 8), its ``min_samples_leaf`` chosen
  by a 5-fold cross-validation on the rows it is fitted on (:func:`fit_decision_tree`);
- ``bgnbd_gamma_gamma``: BG/NBD + Gamma-Gamma, the standard buy-till-you-die model, fitted with
  ``lifetimes`` (:mod:`segstream.trainer.btyd_fit`); it is a baseline and a candidate at once;
- ``bgnbd_gg_corrected``: BG/NBD + Gamma-Gamma's prediction plus regularised boosted trees fitted on its
  residuals (inputs: the features and BG/NBD's expected purchases, P(alive) and expected value);
- ``baseline``: the naive "the next 90 days look like the last 90" (``spend_90d`` at the cutoff).

Metrics: RMSE and MAE per model. Measured on real logs (docs/models.md): on CDNOW the corrected model beats
BG/NBD on both; on Superstore it wins RMSE and loses MAE. The single tree beats the naive baseline's RMSE on
both and never BG/NBD; it has not been selected on either log.

Final model: the simplest candidate (BG/NBD, linear, decision tree, corrected BG/NBD, boosted trees) whose
``RMSE/RMSE(naive) + MAE/MAE(naive)`` (both error measures count) is within 2% of the best, refitted on
ALL customers (features at the
cutoff -> spend in the horizon). Scoring applies it to features as of the scoring time, predicting the
spend in the following ``horizon_days``. The linear model is scored with numpy
(:class:`~segstream.models.scoring.LinearPurchaseScorer`); the decision tree and the boosted trees through
sklearn's batch ``predict`` (:class:`~segstream.models.scoring.EstimatorPurchaseScorer`, the same object in
batch ``score`` and in the stream's serving artifact); the BTYD models through
:mod:`segstream.models.btyd`'s closed forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, train_test_split
from sklearn.tree import DecisionTreeRegressor

from segstream.models.btyd import BTYDCorrectedScorer, BTYDScorer
from segstream.models.features import DAY_MS, FEATURE_NAMES
from segstream.models.scoring import EstimatorPurchaseScorer, LinearPurchaseScorer
from segstream.trainer.btyd_fit import BTYDFitError, fit_btyd
from segstream.trainer.errors import TrainerError
from segstream.trainer.history import History, as_history, change_between, features_at, to_ms, to_timestamp

LINEAR = "linear_regression"
DECISION_TREE = "decision_tree"
TREES = "hist_gradient_boosting"
BTYD = "bgnbd_gamma_gamma"
BTYD_CORRECTED = "bgnbd_gg_corrected"
BASELINE = "baseline"
CANDIDATES = (LINEAR, DECISION_TREE, TREES, BTYD, BTYD_CORRECTED)
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
    scorer: LinearPurchaseScorer | EstimatorPurchaseScorer | BTYDScorer | BTYDCorrectedScorer
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted net spend over the next horizon for full feature rows (FEATURE_NAMES order)."""
        return self.scorer.predict(x)


def calibration_holdout(
    events: pd.DataFrame | History, horizon_days: int, end: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.Series, pd.Timestamp]:
    """Features as of the cutoff ``end - horizon`` (``end`` defaults to the last event), and each of those
    customers' net spend in ``(cutoff, end]`` (summed in integer cents, as the features are).

    ``events``: clean events, or a :class:`~segstream.trainer.history.History` of them.
    """
    if isinstance(events, pd.DataFrame) and events.empty:
        raise PurchaseModelError("purchase models: the events table is empty")
    history = as_history(events)
    end_ms = history.last_ms if end is None else to_ms(end)
    cutoff_ms = end_ms - horizon_days * DAY_MS
    cutoff = to_timestamp(cutoff_ms)
    if history.first_ms > cutoff_ms:
        raise PurchaseModelError(
            f"purchase models: no event on or before the cutoff {cutoff.isoformat()} "
            f"(history must be longer than the {horizon_days}-day horizon)"
        )
    features = features_at(history, cutoff_ms)
    target = change_between(history, features.index, cutoff_ms, end_ms)["spend"].astype(np.float64)
    return features, target, cutoff


def _errors(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    err = pred - y
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "final": False}


def _correction(seed: int) -> HistGradientBoostingRegressor:
    # Shallow, slow and early-stopped: the residuals of a good model are mostly noise.
    return HistGradientBoostingRegressor(
        max_depth=3, learning_rate=0.05, max_iter=300, min_samples_leaf=40, l2_regularization=1.0,
        early_stopping=True, validation_fraction=0.2, random_state=seed,
    )  # fmt: skip


# The single tree. Spend is mostly zeros with a heavy tail, so a tree grown to purity memorises a few big
# spenders; min_samples_leaf is what regularises it, and the best value differs by an order of magnitude
# between logs (measured on the forward and backtest periods, docs/models.md: the generated history wants
# ~10 customers a leaf, CDNOW 25-100, Superstore 200-400, i.e. barely a split), so no fixed value fits all:
# it is chosen by a 5-fold customer cross-validation on the fit rows, with the trainer's own score
# (RMSE/RMSE(naive) + MAE/MAE(naive)) and ties going to the larger leaf. The depth cap only bounds the size
# (at most 256 leaves): cross-validating the depth as well (4, 6 or 8) was no better overall than fixing 8.
TREE_MAX_DEPTH = 8
TREE_LEAF_SIZES = (5, 10, 25, 50, 100, 200, 400)
_TREE_FOLDS = 5


def _tree(min_samples_leaf: int, seed: int) -> DecisionTreeRegressor:
    return DecisionTreeRegressor(max_depth=TREE_MAX_DEPTH, min_samples_leaf=min_samples_leaf, random_state=seed)


# Above this many rows the leaf size is chosen on a random sample of this size and scaled up to the whole
# (the same share of customers a leaf): the 35 cross-validation fits took 132 s at 400k customers, the
# sample's take a few seconds, and no real log we test on is that large, so their trees are unchanged.
TREE_CV_SAMPLE = 25_000


def fit_decision_tree(x: np.ndarray, y: np.ndarray, horizon_days: int, seed: int) -> DecisionTreeRegressor:
    """A regression tree on ``x`` -> ``y``, its leaf size chosen from TREE_LEAF_SIZES by cross-validation
    (on a TREE_CV_SAMPLE-row sample, the chosen size then scaled by ``len(x) / TREE_CV_SAMPLE``, when
    ``x`` has more rows)."""
    folds = min(_TREE_FOLDS, len(x))
    if folds < 2:
        return _tree(TREE_LEAF_SIZES[0], seed).fit(x, y)
    cv_x, cv_y, scale = x, y, 1.0
    if len(x) > TREE_CV_SAMPLE:
        rows = np.random.default_rng(seed).choice(len(x), size=TREE_CV_SAMPLE, replace=False)
        cv_x, cv_y, scale = x[rows], y[rows], len(x) / TREE_CV_SAMPLE
    naive = cv_x[:, PURCHASE_FEATURES.index(_BASELINE_FEATURE)] * (horizon_days / 90.0)
    score = dict.fromkeys(TREE_LEAF_SIZES, 0.0)
    for fit_rows, held_out in KFold(folds, shuffle=True, random_state=seed).split(cv_x):
        reference = _errors(cv_y[held_out], naive[held_out])
        for leaf in TREE_LEAF_SIZES:
            pred = _tree(leaf, seed).fit(cv_x[fit_rows], cv_y[fit_rows]).predict(cv_x[held_out])
            score[leaf] += _relative(_errors(cv_y[held_out], pred), reference)
    best = min(score, key=lambda leaf: (score[leaf], -leaf))
    return _tree(int(round(best * scale)), seed).fit(x, y)


def fit_candidate(name: str, x: np.ndarray, y: np.ndarray, horizon_days: int, seed: int) -> Any:
    """Fit one candidate on feature rows ``x`` and realised spend ``y``; returns its scorer.

    Raises:
        BTYDFitError: a BTYD candidate whose fit did not converge.
    """
    if name == LINEAR:
        return LinearPurchaseScorer(LinearRegression().fit(x, y), PURCHASE_FEATURES)
    if name == DECISION_TREE:
        return EstimatorPurchaseScorer(fit_decision_tree(x, y, horizon_days, seed), PURCHASE_FEATURES)
    if name == TREES:
        return EstimatorPurchaseScorer(HistGradientBoostingRegressor(random_state=seed).fit(x, y), PURCHASE_FEATURES)
    btyd = fit_btyd(x, horizon_days)
    if name == BTYD:
        return btyd
    shell = BTYDCorrectedScorer(btyd, None)
    return BTYDCorrectedScorer(btyd, _correction(seed).fit(shell.design(x), y - btyd.predict(x)))


# Simplest first: a more complex model must earn its place by a clear margin (the validation period is one
# period, and a few heavy spenders move RMSE a lot).
# One tree is simpler than BG/NBD plus boosted trees on its residuals, and than the boosted trees.
_SIMPLICITY = (BTYD, LINEAR, DECISION_TREE, BTYD_CORRECTED, TREES)
_MARGIN = 0.02


def _select(metrics: dict[str, dict[str, Any]]) -> str:
    """The simplest candidate within ``_MARGIN`` of the best relative score."""
    fitted = [n for n in _SIMPLICITY if n in metrics]
    score = {n: _relative(metrics[n], metrics[BASELINE]) for n in fitted}
    best = min(score.values())
    return next(n for n in fitted if score[n] <= best * (1 + _MARGIN))


def _relative(errors: dict[str, Any], naive: dict[str, Any]) -> float:
    return errors["rmse"] / max(naive["rmse"], 1e-12) + errors["mae"] / max(naive["mae"], 1e-12)


def _earlier_period(
    history: History, horizon_days: int, cutoff: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray] | None:
    """Features at ``cutoff - horizon`` and spend up to ``cutoff``, when enough customers were known then."""
    if history.first_ms > to_ms(cutoff) - horizon_days * DAY_MS:
        return None
    features, target, _ = calibration_holdout(history, horizon_days, end=cutoff)
    if len(features) < _MIN_CUSTOMERS:
        return None
    return features[list(PURCHASE_FEATURES)].to_numpy(dtype=np.float64), target.to_numpy()


def fit_purchase_models(
    events: pd.DataFrame | History, horizon_days: int = 90, seed: int = 0, *, test_size: float = 0.25
) -> PurchaseModels:
    """Evaluate the purchase models against the baselines and refit the best one on all customers.

    Args:
        events: Clean events (``customer_id``, ``timestamp`` UTC, ``amount``), or a
            :class:`~segstream.trainer.history.History` of them.
        horizon_days: Prediction horizon (and the length of the holdout period).
        seed: Seed of the customer split and the boosted trees.
        test_size: Share of customers held out for the metrics.

    Returns:
        The :class:`PurchaseModels`.
    """
    if isinstance(events, pd.DataFrame) and events.empty:
        raise PurchaseModelError("purchase models: the events table is empty")
    history = as_history(events)
    features, target, cutoff = calibration_holdout(history, horizon_days)
    if len(features) < _MIN_CUSTOMERS:
        raise PurchaseModelError(
            f"purchase models: only {len(features)} customers have events before the cutoff "
            f"{cutoff.isoformat()}, need at least {_MIN_CUSTOMERS}"
        )
    x = features[list(PURCHASE_FEATURES)].to_numpy(dtype=np.float64)
    y = target.to_numpy()
    naive_col = PURCHASE_FEATURES.index(_BASELINE_FEATURE)
    scale = horizon_days / 90.0  # the naive forecast: the last 90 days' spend, scaled to the horizon
    # Forward validation when the history allows: fit on the period before, judge on the last one, as the
    # models will be used (features now -> spend later). Models on absolute-time features (tenure,
    # recency) can win a random customer split and still lose a period later, so this is the better judge.
    early = _earlier_period(history, horizon_days, cutoff)
    if early is not None:
        fit_x, fit_y = early
        eval_x, eval_y = x, y
        split = {"validation": "forward", "validation_cutoff": (cutoff - pd.Timedelta(days=horizon_days)).isoformat(),
                 "fit_customers": int(len(fit_x)), "eval_customers": int(len(eval_x))}  # fmt: skip
    else:
        train, test = train_test_split(np.arange(len(x)), test_size=test_size, random_state=seed)
        fit_x, fit_y, eval_x, eval_y = x[train], y[train], x[test], y[test]
        split = {"validation": "customer split", "fit_customers": int(len(train)), "eval_customers": int(len(test))}
    metrics: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    tree_leaf: dict[str, int] = {}
    for name in CANDIDATES:
        try:
            candidate = fit_candidate(name, fit_x, fit_y, horizon_days, seed)
        except BTYDFitError as exc:
            skipped[name] = str(exc)
            continue
        metrics[name] = _errors(eval_y, candidate.predict(eval_x))
        if name == DECISION_TREE:
            tree_leaf["validation"] = int(candidate.model.min_samples_leaf)
    metrics[BASELINE] = _errors(eval_y, scale * eval_x[:, naive_col])

    final_name = _select(metrics)
    metrics[final_name]["final"] = True
    scorer = fit_candidate(final_name, x, y, horizon_days, seed)
    info = {
        "cutoff": cutoff.isoformat(),
        "horizon_days": int(horizon_days),
        "customers": int(len(x)),
        **split,
        "selection": "simplest model within 2% of the lowest RMSE/RMSE(naive) + MAE/MAE(naive) on validation",
        "final_model": final_name,
        "skipped": skipped,
    }
    if final_name == DECISION_TREE:
        tree_leaf["final"] = int(scorer.model.min_samples_leaf)
    if tree_leaf:
        info["decision_tree"] = {"max_depth": TREE_MAX_DEPTH, "min_samples_leaf": tree_leaf}
    btyd = scorer if isinstance(scorer, BTYDScorer) else getattr(scorer, "btyd", None)
    if btyd is not None:
        info["btyd_params"] = btyd.params_dict()
    model = getattr(scorer, "model", None) or getattr(scorer, "correction", None) or scorer
    return PurchaseModels(metrics, final_name, model, scorer, info)
