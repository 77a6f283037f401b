"""The single decision tree among the purchase models: fitted, judged like the others, bundled, served as fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeRegressor

from segstream.models.bundle import load_bundle, verify_bundle
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, batch_features
from segstream.models.scoring import EstimatorPurchaseScorer
from segstream.models.serving import SERVING
from segstream.trainer import purchase
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from segstream.trainer.purchase import (
    BASELINE,
    BTYD,
    BTYD_CORRECTED,
    DECISION_TREE,
    LINEAR,
    TREE_LEAF_SIZES,
    TREE_MAX_DEPTH,
    TREES,
    calibration_holdout,
    fit_candidate,
    fit_decision_tree,
    fit_purchase_models,
)
from segstream.trainer.scoring import PURCHASE, score_customers


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    raw = generate_transactions(800, 450, seed=5, dirty_fraction=0.0)
    return clean_transactions(raw, "generated")[0]


@pytest.fixture(scope="module")
def models(events):
    return fit_purchase_models(events, horizon_days=90, seed=0)


def _rows(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


def test_the_tree_is_fitted_and_judged_forward_like_the_others(events, models) -> None:
    scores = models.metrics[DECISION_TREE]
    assert set(scores) == {"rmse", "mae", "final"} and scores["rmse"] >= scores["mae"] > 0.0
    assert json.loads(json.dumps(models.info)) == models.info
    leaf = models.info["decision_tree"]["min_samples_leaf"]["validation"]
    assert models.info["decision_tree"]["max_depth"] == TREE_MAX_DEPTH and leaf in TREE_LEAF_SIZES
    # The reported numbers are the tree fitted on the earlier period and judged on the last one.
    features, target, cutoff = calibration_holdout(events, 90)
    early_x, early_y, _ = calibration_holdout(events, 90, end=cutoff)
    tree = fit_candidate(DECISION_TREE, _rows(early_x), early_y.to_numpy(), 90, 0)
    assert isinstance(tree, EstimatorPurchaseScorer) and isinstance(tree.model, DecisionTreeRegressor)
    assert tree.model.min_samples_leaf == leaf and tree.model.get_depth() <= TREE_MAX_DEPTH
    err = tree.predict(_rows(features)) - target.to_numpy()
    assert scores["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-12)
    assert scores["mae"] == pytest.approx(float(np.mean(np.abs(err))), rel=1e-12)


def test_leaf_size_follows_the_noise() -> None:
    """Pure noise gets the largest leaves (no split pays); a fine-grained signal gets small ones."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 50, size=(3000, len(FEATURE_NAMES)))
    noise = rng.exponential(100.0, size=3000) * (rng.uniform(size=3000) < 0.2)
    signal = 10.0 * np.floor(x[:, FEATURE_NAMES.index("frequency")])  # 50 steps: needs many leaves
    noisy_tree = fit_decision_tree(x, noise, 90, 0)
    fine_tree = fit_decision_tree(x, signal + rng.normal(0, 1.0, size=3000), 90, 0)
    assert noisy_tree.min_samples_leaf == max(TREE_LEAF_SIZES)
    assert fine_tree.min_samples_leaf <= 25 and fine_tree.get_n_leaves() >= 40
    # Deterministic for a seed: the trainer's validation fit and the backtest's fit are the same tree.
    again = fit_decision_tree(x, noise, 90, 0)
    np.testing.assert_array_equal(again.predict(x), noisy_tree.predict(x))


def test_tiny_fit_sets_still_give_a_tree() -> None:
    x = np.arange(3 * len(FEATURE_NAMES), dtype=np.float64).reshape(3, -1)
    tree = fit_decision_tree(x, np.array([1.0, 2.0, 3.0]), 90, 0)
    assert tree.predict(x).shape == (3,)
    one = fit_decision_tree(x[:1], np.array([7.0]), 90, 0)
    assert one.predict(x).tolist() == [7.0, 7.0, 7.0]


def test_one_tree_sits_between_linear_and_the_boosted_models_in_the_simplicity_order() -> None:
    def metrics(**relative: float) -> dict:
        out = {name: {"rmse": r / 2, "mae": r / 2, "final": False} for name, r in relative.items()}
        out[BASELINE] = {"rmse": 1.0, "mae": 1.0, "final": False}
        return out

    # Ties within 2%: the simpler model wins.
    assert purchase._select(metrics(**{DECISION_TREE: 1.50, TREES: 1.49, BTYD_CORRECTED: 1.49})) == DECISION_TREE
    assert purchase._select(metrics(**{LINEAR: 1.51, DECISION_TREE: 1.50, BTYD: 1.80})) == LINEAR
    assert purchase._select(metrics(**{BTYD: 1.505, DECISION_TREE: 1.50, LINEAR: 1.60})) == BTYD
    # Otherwise the best one, tree or not.
    assert purchase._select(metrics(**{LINEAR: 1.70, DECISION_TREE: 1.50, BTYD: 1.70, TREES: 1.60})) == DECISION_TREE
    assert purchase._select(metrics(**{LINEAR: 1.70, DECISION_TREE: 1.60, TREES: 1.50})) == TREES


def test_a_bundle_whose_final_model_is_the_tree_round_trips(events, tmp_path, monkeypatch) -> None:
    # The selection itself is tested above; here the tree is made the final model to test the bundle.
    monkeypatch.setattr(purchase, "_select", lambda metrics: DECISION_TREE)
    opts = TrainOptions(k_range=range(3, 5), seed=1)
    trained = train_bundle(events, tmp_path / "b", options=opts)
    assert trained.metrics["purchase"][DECISION_TREE]["final"] is True
    manifest = verify_bundle(trained.bundle_dir, expected_feature_hash=FEATURE_SPEC.hash)
    assert manifest.info["purchase"]["final_model"] == DECISION_TREE
    assert "final" in manifest.info["purchase"]["decision_tree"]["min_samples_leaf"]

    loaded = load_bundle(trained.bundle_dir, expected_feature_hash=FEATURE_SPEC.hash)
    serving, models = loaded.artifact(SERVING), loaded.artifact(PURCHASE)
    assert isinstance(serving.purchase, EstimatorPurchaseScorer)
    assert isinstance(serving.purchase.model, DecisionTreeRegressor)
    # The refit on all customers, redone here: the bundle holds exactly that tree.
    features, target, _ = calibration_holdout(events, 90)
    expected = fit_candidate(DECISION_TREE, _rows(features), target.to_numpy(), 90, opts.seed)
    now = _rows(batch_features(events))
    want = expected.predict(now)
    assert len(np.unique(want)) > 1  # not a constant: the comparison below means something
    np.testing.assert_array_equal(serving.predict_spend(now), want)
    np.testing.assert_array_equal(models.predict(now), want)
    # Row by row (the dashboard's what-if) equals the batch call (score).
    np.testing.assert_array_equal(np.concatenate([serving.purchase.predict(row) for row in now[:50]]), want[:50])
    scored = score_customers(trained.bundle_dir, events).set_index("customer_id")
    ids = batch_features(events).index
    np.testing.assert_array_equal(scored.loc[ids, "predicted_spend_90d"].to_numpy(), want)
