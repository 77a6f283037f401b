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
    assert set(models.metrics) == {LINEAR, TREES, BASELINE}
    for m in models.metrics.values():
        assert m["rmse"] >= m["mae"] >= 0.0
    assert [name for name, m in models.metrics.items() if m["final"]] == [models.final_name]
    assert json.loads(json.dumps(models.metrics)) == models.metrics


def test_the_final_model_beats_or_matches_the_baseline(models) -> None:
    final = models.metrics[models.final_name]
    baseline = models.metrics[BASELINE]
    assert final["rmse"] <= baseline["rmse"] * 1.02
    assert final["rmse"] == min(models.metrics[LINEAR]["rmse"], models.metrics[TREES]["rmse"])


def test_split_is_by_customer_and_excludes_customers_without_history(events, models) -> None:
    ts = pd.to_datetime(events["timestamp"], utc=True)
    cutoff = ts.max() - pd.Timedelta(days=90)
    known = events.loc[ts <= cutoff, "customer_id"].nunique()
    assert models.info["customers"] == known < events["customer_id"].nunique()
    assert models.info["train_customers"] + models.info["test_customers"] == known
    assert models.info["cutoff"] == cutoff.isoformat()


def test_final_model_is_refit_on_all_customers_and_scores_feature_rows(events, models) -> None:
    assert models.model.n_features_in_ == len(FEATURE_NAMES)
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
