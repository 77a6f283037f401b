"""The entropy tree explains planted segments accurately, readably and equal to its numpy twin."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segstream.models.features import FEATURE_NAMES
from segstream.trainer.classifier import ClassifierError, fit_classifier
from segstream.trainer.segmentation import CLUSTER_FEATURES

# Segment id -> (recency, frequency, aov, tenure) of a planted group.
GROUPS = {
    0: (2.0, 80.0, 50.0, 300.0),
    1: (60.0, 8.0, 190.0, 300.0),
    2: (3.0, 3.0, 35.0, 15.0),
    5: (40.0, 6.0, 8.0, 280.0),
}


def planted(per_group: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for seg, (rec, freq, aov, ten) in GROUPS.items():
        x = rng.lognormal(1.0, 0.5, size=(per_group, len(FEATURE_NAMES)))
        for name, value in {"recency_days": rec, "frequency": freq, "aov": aov, "tenure_days": ten}.items():
            x[:, FEATURE_NAMES.index(name)] = value * np.exp(rng.normal(0, 0.15, per_group))
        frames.append(x)
        labels += [seg] * per_group
    index = pd.Index([f"c{i}" for i in range(len(labels))], name="customer_id")
    features = pd.DataFrame(np.vstack(frames), columns=list(FEATURE_NAMES), index=index)
    return features, pd.Series(labels, index=index, name="segment")


@pytest.fixture(scope="module")
def fitted():
    features, labels = planted()
    names = {0: "Champions", 1: "Big spenders", 2: "New", 5: "Low value"}
    return features, labels, fit_classifier(features, labels, seed=0, segment_names=names)


def test_accurate_on_planted_segments(fitted) -> None:
    _, _, clf = fitted
    m = clf.metrics
    assert m["accuracy"] > 0.97 and m["f1_macro"] > 0.97
    assert m["precision_macro"] > 0.97 and m["recall_macro"] > 0.97
    assert m["labels"] == [0, 1, 2, 5] == clf.labels
    assert m["stratified"] is True


def test_confusion_matrix_matches_labels_and_test_split(fitted) -> None:
    features, _, clf = fitted
    cm = np.array(clf.confusion)
    assert cm.shape == (4, 4)
    assert cm.sum() == clf.metrics["test_rows"] == round(len(features) * 0.25)
    # Stratified: every class has its share of the test rows.
    assert (cm.sum(axis=1) == 100).all()


def test_metrics_and_report_are_json_ready(fitted) -> None:
    _, _, clf = fitted
    assert json.loads(json.dumps(clf.metrics)) == clf.metrics
    assert set(json.loads(json.dumps(clf.report))) >= {"0", "1", "2", "5", "macro avg"}


def test_rules_are_readable_text_with_feature_and_segment_names(fitted) -> None:
    _, _, clf = fitted
    assert clf.model.get_depth() <= 6
    assert any(f in clf.rules_text for f in CLUSTER_FEATURES)
    assert "feature_" not in clf.rules_text
    assert "class: 2 New" in clf.rules_text


def test_numpy_scorer_equals_the_tree(fitted) -> None:
    features, _, clf = fitted
    x = features.to_numpy()
    noisy = x * np.exp(np.random.default_rng(1).normal(0, 1.0, x.shape))
    for rows in (x, noisy):
        sub = np.ascontiguousarray(rows[:, clf.scorer.columns])
        assert np.array_equal(clf.scorer.predict(rows), clf.model.predict(sub))
    steps = clf.scorer.decision_path(x[0])
    assert 1 <= len(steps) <= 6 and steps[0].feature in CLUSTER_FEATURES


def test_tiny_segment_falls_back_to_an_unstratified_split() -> None:
    features, labels = planted(per_group=60)
    labels.iloc[0] = 9  # a segment of one customer cannot be stratified
    clf = fit_classifier(features, labels)
    assert clf.metrics["stratified"] is False and 9 in clf.metrics["labels"]


def test_bad_inputs_name_the_problem() -> None:
    features, labels = planted(per_group=30)
    with pytest.raises(ClassifierError, match="c3"):
        fit_classifier(features, labels.drop("c3"))
    with pytest.raises(ClassifierError, match="two segments"):
        fit_classifier(features, labels * 0)
    with pytest.raises(ClassifierError, match="aov"):
        fit_classifier(features.drop(columns="aov"), labels)
