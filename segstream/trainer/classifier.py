"""A readable decision tree that explains the K-Means segments in the customers' own units.

The tree (entropy criterion, depth limited so the rules fit on a screen) is trained on the UNSCALED
clustered features to predict the segment id K-Means gave each customer. It is evaluated on a
stratified held-out split (fixed seed) and the model shipped is exactly the one evaluated (fitted on the
training part only), so the metrics describe what the dashboard shows. Its rules are exported with the
feature names; :class:`segstream.models.scoring.TreeScorer` replays it with numpy for the what-if page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier, export_text

from segstream.models.attributes import WideTreeScorer
from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import TreeScorer
from segstream.trainer.errors import TrainerError
from segstream.trainer.segmentation import CLUSTER_FEATURES


class ClassifierError(TrainerError):
    """The segment classifier cannot be trained on the given features and labels."""


@dataclass
class ClassifierModel:
    """The fitted tree, its numpy twin and its evaluation.

    Attributes:
        model: The fitted DecisionTreeClassifier (trained on ``feature_names`` columns, unscaled).
        scorer: Numpy replay of ``model`` taking full FEATURE_NAMES rows.
        feature_names: The tree's input columns.
        labels: Class (segment id) order of the confusion matrix.
        metrics: ``metrics.classifier`` of the manifest.
        rules_text: The rules as text (``sklearn.tree.export_text``).
        report: Per-class precision/recall/f1/support (``classification_report`` as a dict).
    """

    model: DecisionTreeClassifier
    scorer: TreeScorer
    feature_names: tuple[str, ...]
    labels: list[int]
    metrics: dict[str, Any]
    rules_text: str
    report: dict[str, Any]

    @property
    def confusion(self) -> list[list[int]]:
        """Confusion matrix (rows true, columns predicted) in :attr:`labels` order."""
        return self.metrics["confusion_matrix"]


def _json_report(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            out[str(key)] = {str(k): float(v) for k, v in value.items()}
        else:
            out[str(key)] = float(value)
    return out


def fit_classifier(
    features: pd.DataFrame,
    labels: pd.Series,
    seed: int = 0,
    *,
    max_depth: int = 6,
    min_samples_leaf: int = 20,
    test_size: float = 0.25,
    feature_names: Sequence[str] = CLUSTER_FEATURES,
    segment_names: Mapping[int, str] | None = None,
    input_names: Sequence[str] = FEATURE_NAMES,
) -> ClassifierModel:
    """Fit and evaluate the entropy decision tree predicting the segment from unscaled features.

    Args:
        features: Features indexed by customer_id (``batch_features`` output).
        labels: Segment id per customer (same index; e.g. ``SegmentationModel.labels``).
        seed: Seed of the split and the tree.
        max_depth: Depth limit that keeps the rules readable.
        min_samples_leaf: Smallest leaf, so no rule describes a handful of customers.
        test_size: Share of customers held out for the metrics.
        feature_names: The tree's input columns (default: the clustered features).
        segment_names: Segment id -> name, shown next to the id in the rules.
        input_names: Columns of the rows the shipped scorer takes (default the behaviour features; with
            customer attributes see :class:`segstream.models.attributes.WideTreeScorer`).

    Returns:
        The fitted :class:`ClassifierModel`.
    """
    names = tuple(feature_names)
    missing = [f for f in names if f not in features.columns]
    if missing:
        raise ClassifierError(f"features table lacks column(s) {missing}")
    y_series = labels.reindex(features.index)
    if y_series.isna().any():
        raise ClassifierError(f"no segment label for customer {y_series.index[y_series.isna()][0]!r}")
    x = features[list(names)].to_numpy(dtype=np.float64)
    y = y_series.to_numpy().astype(np.int64)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ClassifierError(f"need at least two segments to train the classifier, got {classes.tolist()}")
    # Stratify when every class can appear on both sides; a tiny segment would make sklearn refuse.
    stratify = y if counts.min() >= 2 and len(y) * test_size >= len(classes) else None
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=stratify)
    tree = DecisionTreeClassifier(
        criterion="entropy", max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=seed
    ).fit(x_tr, y_tr)
    wide = tuple(input_names) != FEATURE_NAMES
    scorer = WideTreeScorer(tree, names, input_names) if wide else TreeScorer(tree, names)
    pred = tree.predict(x_te)
    order = [int(c) for c in classes]
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_te, pred, labels=order, average="macro", zero_division=0
    )
    report = classification_report(
        y_te, pred, labels=order, target_names=[str(c) for c in order], output_dict=True, zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(y_te, pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "confusion_matrix": confusion_matrix(y_te, pred, labels=order).astype(int).tolist(),
        "labels": order,
        "max_depth": int(max_depth),
        "n_leaves": int(tree.get_n_leaves()),
        "train_rows": int(len(y_tr)),
        "test_rows": int(len(y_te)),
        "stratified": stratify is not None,
    }
    # export_text wants one name per tree.classes_ entry (a class absent from the training part has none).
    trained = [int(c) for c in tree.classes_]
    shown = [f"{c} {segment_names[c]}" if segment_names and c in segment_names else str(c) for c in trained]
    rules = export_text(tree, feature_names=list(names), class_names=shown, decimals=2)
    return ClassifierModel(tree, scorer, names, order, metrics, rules, _json_report(report))
