"""Purchase models: honest calibration/holdout setup, metrics per model, better than the naive baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segstream.models.features import FEATURE_NAMES, batch_features
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.purchase import (
    BASELINE,
    BTYD,
    BTYD_CORRECTED,
    CANDIDATES,
    DECISION_TREE,
    LINEAR,
    TREES,
    PurchaseModelError,
    calibration_holdout,
    fit_purchase_models,
)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    raw = generate_transactions(1500, 450, seed=4, dirty_fraction=0.0)
    clean, _ = clean_transactions(raw, "generated")
    return clean


@pytest.fixture(scope="module")
def models(events):
    return fit_purchase_models(events, horizon_days=90, seed=0)


def test_metrics_per_model_and_baseline(models) -> None:
    assert set(models.metrics) == {LINEAR, DECISION_TREE, TREES, BTYD, BTYD_CORRECTED, BASELINE}
    for m in models.metrics.values():
        assert m["rmse"] >= m["mae"] >= 0.0
    assert [name for name, m in models.metrics.items() if m["final"]] == [models.final_name]
    assert json.loads(json.dumps(models.metrics)) == models.metrics


def test_the_final_model_beats_or_matches_the_baseline(models) -> None:
    final = models.metrics[models.final_name]
    baseline = models.metrics[BASELINE]
    assert final["rmse"] <= baseline["rmse"] * 1.02
    def relative(m: dict) -> float:
        return m["rmse"] / baseline["rmse"] + m["mae"] / baseline["mae"]

    assert relative(final) <= 1.02 * min(relative(models.metrics[name]) for name in CANDIDATES)


def test_split_is_by_customer_and_excludes_customers_without_history(events, models) -> None:
    ts = pd.to_datetime(events["timestamp"], utc=True)
    cutoff = ts.max() - pd.Timedelta(days=90)
    known = events.loc[ts <= cutoff, "customer_id"].nunique()
    assert models.info["customers"] == known < events["customer_id"].nunique()
    assert models.info["validation"] == "forward"  # 450 days: the period before the last one is there
    earlier = events.loc[ts <= cutoff - pd.Timedelta(days=90), "customer_id"].nunique()
    assert models.info["fit_customers"] == earlier and models.info["eval_customers"] == known
    assert models.info["cutoff"] == cutoff.isoformat()


def test_final_model_is_refit_on_all_customers_and_scores_feature_rows(events, models) -> None:
    now = batch_features(events).to_numpy()
    pred = models.predict(now)
    assert pred.shape == (len(now),) and np.isfinite(pred).all()
    # Frequent big spenders are expected to spend more than the rest.
    spend = now[:, FEATURE_NAMES.index("spend_90d")]
    assert pred[spend > np.quantile(spend, 0.9)].mean() > pred[spend < np.quantile(spend, 0.5)].mean()


def test_calibration_target_is_net_spend_after_the_cutoff() -> None:
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    rows = [
        ("a", t0, 10.0),
        ("a", t0 + pd.Timedelta(days=150), 30.0),
        ("a", t0 + pd.Timedelta(days=160), -5.0),
        ("b", t0 + pd.Timedelta(days=5), 7.0),
        ("c", t0 + pd.Timedelta(days=170), 99.0),  # no history before the cutoff: excluded
        ("d", t0 + pd.Timedelta(days=200), 1.0),  # the last event fixes the cutoff at day 110
    ]
    events = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    features, target, cutoff = calibration_holdout(events, horizon_days=90)
    assert cutoff == t0 + pd.Timedelta(days=110)
    assert target.to_dict() == {"a": 25.0, "b": 0.0}
    assert list(features.index) == ["a", "b"]
    assert features.loc["a", "frequency"] == 1.0  # later events excluded from the features


def test_too_short_history_is_refused(events) -> None:
    ts = pd.to_datetime(events["timestamp"], utc=True)
    short = events[ts > ts.max() - pd.Timedelta(days=60)]
    with pytest.raises(PurchaseModelError, match="cutoff"):
        fit_purchase_models(short, horizon_days=90)
    with pytest.raises(PurchaseModelError, match="empty"):
        fit_purchase_models(events.iloc[:0])


def test_bgnbd_baseline_is_what_lifetimes_predicts(events, models) -> None:
    """The BTYD candidate is lifetimes' own BG/NBD + Gamma-Gamma, not a re-implementation's guess."""
    from lifetimes import BetaGeoFitter

    from segstream.models.btyd import btyd_inputs
    from segstream.trainer.purchase import fit_candidate

    features, target, _ = calibration_holdout(events, 90)
    x = features[list(FEATURE_NAMES)].to_numpy()
    scorer = fit_candidate(BTYD, x, target.to_numpy(), 90, 0)
    f, r, t, _ = btyd_inputs(x)
    bg = BetaGeoFitter().fit(f, r, t)
    expected = bg.conditional_expected_number_of_purchases_up_to_time(90, f, r, t)
    np.testing.assert_allclose(scorer.expected_purchases(x)[f >= 0], np.asarray(expected), rtol=1e-4)


def test_a_btyd_fit_that_cannot_converge_is_skipped_not_fatal() -> None:
    """Three customers who never came back: no repeat buyers, BTYD is skipped with its reason."""
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    rows = [(f"c{i}", t0 + pd.Timedelta(days=i), 10.0 + i) for i in range(30)]
    rows.append(("z", t0 + pd.Timedelta(days=200), 5.0))
    events = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    fitted = fit_purchase_models(events, horizon_days=90)
    assert BTYD in fitted.info["skipped"] and "repeat buyers" in fitted.info["skipped"][BTYD]
    assert fitted.final_name in (LINEAR, DECISION_TREE, TREES)
