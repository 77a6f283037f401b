"""Segmentation on planted clusters: k recovered, names right, ids stable, scorer equal to sklearn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import signed_log1p
from segstream.trainer.segmentation import (
    CLUSTER_FEATURES,
    fit_segmentation,
)

# recency, frequency, monetary, aov, tenure, purchase_rate, returns_count per planted group.
PLANTED = {
    "Champions": (2.0, 80.0, 4000.0, 50.0, 300.0, 8.0, 2.0),
    "Big spenders": (60.0, 8.0, 1500.0, 190.0, 300.0, 0.8, 0.5),
    "New": (3.0, 3.0, 100.0, 35.0, 15.0, 6.0, 0.05),
    "Low value": (40.0, 6.0, 50.0, 8.0, 280.0, 0.6, 0.05),
}


def planted_features(per_group: int = 500, seed: int = 0, noise: float = 0.15) -> tuple[pd.DataFrame, np.ndarray]:
    """A features table with four well-separated behaviour groups (multiplicative noise)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for g, (rec, freq, mon, aov, ten, rate, ret) in enumerate(PLANTED.values()):
        m = np.exp(rng.normal(0, noise, size=(per_group, len(FEATURE_NAMES))))
        x = rng.lognormal(1.0, 0.5, size=(per_group, len(FEATURE_NAMES)))  # unclustered columns
        base = {
            "recency_days": rec,
            "frequency": freq,
            "monetary": mon,
            "aov": aov,
            "tenure_days": ten,
            "purchase_rate": rate,
            "spend_365d": mon,
            "returns_count": ret,
        }
        for name, value in base.items():
            i = FEATURE_NAMES.index(name)
            x[:, i] = value * m[:, i]
        x[:, FEATURE_NAMES.index("spend_365d")] = x[:, FEATURE_NAMES.index("monetary")]
        rows.append(x)
        truth += [g] * per_group
    frame = pd.DataFrame(np.vstack(rows), columns=list(FEATURE_NAMES))
    order = rng.permutation(len(frame))
    frame = frame.iloc[order].set_axis([f"c{i:05d}" for i in range(len(frame))])
    frame.index.name = "customer_id"
    return frame, np.asarray(truth)[order]


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, np.ndarray]:
    return planted_features()


@pytest.fixture(scope="module")
def model(planted):
    return fit_segmentation(planted[0], seed=0)


def test_recovers_planted_k_and_groups(model, planted) -> None:
    features, truth = planted
    assert model.k == 4
    assert adjusted_rand_score(truth, model.labels.to_numpy()) > 0.98
    assert set(model.inertia_by_k) == set(range(4, 9)) == set(model.silhouette_by_k) == set(model.criteria_by_k)
    assert max(model.silhouette_by_k, key=model.silhouette_by_k.get) == 4
    assert sum(model.sizes.values()) == len(features)


def test_names_match_the_planted_groups(model, planted) -> None:
    features, truth = planted
    names = model.labels.map(model.names).to_numpy()
    for g, expected in enumerate(PLANTED):
        assert (names[truth == g] == expected).mean() > 0.95


def test_pca_keeps_enough_variance(model) -> None:
    assert sum(model.explained_variance_ratio) >= 0.90
    assert model.n_components == len(model.explained_variance_ratio) >= 2
    assert model.explained_variance_ratio == model.explained_variance_ratio_all[: model.n_components]


def test_metrics_are_json_ready(model) -> None:
    metrics = json.loads(json.dumps(model.metrics))
    assert metrics["k"] == 4 and metrics["n_components"] == model.n_components
    assert set(metrics["inertia_by_k"]) == {str(k) for k in range(4, 9)} == set(metrics["criteria_by_k"])
    assert set(metrics["criteria_by_k"]["4"]) == {
        "inertia",
        "silhouette",
        "calinski_harabasz",
        "davies_bouldin",
        "stability",
        "smallest_share",
    }
    assert metrics["stability"]["chosen"] > 0.9 and set(metrics["stability"]["by_k"]) == set(metrics["criteria_by_k"])
    assert set(metrics["descriptions"]) == set(metrics["names"]) == set(metrics["sizes"])
    assert metrics["cluster_features"] == list(CLUSTER_FEATURES)
    assert -1.0 <= metrics["silhouette"] <= 1.0


def test_labels_are_sklearn_pipeline_predictions(model, planted) -> None:
    x = planted[0][list(FEATURE_NAMES)].to_numpy()
    cols = [FEATURE_NAMES.index(f) for f in CLUSTER_FEATURES]
    z = model.pca.transform(model.scaler.transform(signed_log1p(np.ascontiguousarray(x[:, cols]))))
    expected = model.scorer.label_to_id[model.kmeans.predict(z)]
    assert np.array_equal(model.labels.to_numpy(), expected)
    assert np.array_equal(model.scorer.predict_segment(x), expected)


def test_centroids_are_in_original_units(model) -> None:
    champions = next(i for i, n in model.names.items() if n == "Champions")
    row = model.centroids.loc[champions]
    assert 2000 < row["monetary"] < 8000 and 40 < row["frequency"] < 160
    assert list(model.centroids.columns) == list(CLUSTER_FEATURES)
    assert list(model.profiles.index) == list(model.centroids.index)


def test_forced_k(planted) -> None:
    m = fit_segmentation(planted[0], k=6, k_range=range(2, 5))
    assert m.k == 6 and m.k_reason == "forced" and len(m.names) == 6 == len(set(m.names.values()))


def test_retrain_on_a_resample_keeps_ids(model, planted) -> None:
    features, _ = planted
    resample = features.sample(frac=1.0, replace=True, random_state=7)
    resample = resample.set_axis([f"r{i}" for i in range(len(resample))])
    again = fit_segmentation(resample, previous=model, seed=3)
    assert sorted(again.names) == sorted(model.names)
    assert again.names == model.names
    assert (
        model.scorer.predict_segment(features.to_numpy()) == again.scorer.predict_segment(features.to_numpy())
    ).mean() > 0.98


def test_a_new_segment_gets_a_fresh_id(model, planted) -> None:
    more = fit_segmentation(planted[0], k=5, previous=model)
    assert set(model.names) < set(more.names)
    assert max(more.names) == max(model.names) + 1


def test_seeded_fit_is_deterministic(model, planted) -> None:
    again = fit_segmentation(planted[0], seed=0)
    assert again.names == model.names and again.labels.equals(model.labels)
