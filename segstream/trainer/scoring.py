"""Batch scoring of a history file with a bundle: the offline twin of what the worker does per event."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from segstream.models.bundle import load_bundle
from segstream.models.features import FEATURE_SPEC, batch_features

SEGMENTATION = "segmentation"
PURCHASE = "purchase"


def score_customers(bundle: Path, events: pd.DataFrame, signing_key: bytes | None = None) -> pd.DataFrame:
    """Features, segment, segment name and predicted 90-day spend for every customer in ``events``.

    Features are computed as of the latest event in ``events`` (the batch as-of rule), with the same code
    the worker runs, and segments with the same scorer.

    Raises:
        BundleError: The bundle fails verification or was trained on another feature spec.
    """
    loaded = load_bundle(Path(bundle), expected_feature_hash=FEATURE_SPEC.hash, signing_key=signing_key)
    segmentation = loaded.artifact(SEGMENTATION)
    purchase = loaded.artifact(PURCHASE)
    features = batch_features(events)
    x = features.to_numpy()
    table = features.copy()
    table["segment"] = segmentation.scorer.predict_segment(x)
    table["segment_name"] = table["segment"].map(segmentation.names)
    table["predicted_spend_90d"] = np.asarray(purchase.predict(x), dtype=np.float64)
    table["model_version"] = loaded.version
    table["as_of"] = pd.Timestamp(features.attrs["as_of_ms"], unit="ms", tz="UTC")
    return table.reset_index()
