"""Batch scoring of a history file with a bundle: the offline twin of what the worker does per event."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segstream.models.bundle import load_bundle
from segstream.models.features import FEATURE_SPEC, batch_features
from segstream.models.serving import SERVING, ServingModels

# Names of the trainer's own artifacts in a bundle (beside the pure SERVING one).
SEGMENTATION = "segmentation"
PURCHASE = "purchase"


def score_customers(bundle: Path, events: pd.DataFrame, signing_key: bytes | None = None) -> pd.DataFrame:
    """Features, segment, segment name and predicted 90-day spend for every customer in ``events``.

    Features are computed as of the latest event in ``events`` (the batch as-of rule), with the same code
    the worker runs, and segments with the same scorer.

    Raises:
        BundleError: The bundle fails verification or was trained on another feature spec.
    """
    loaded = load_bundle(
        Path(bundle), expected_feature_hash=FEATURE_SPEC.hash, signing_key=signing_key, only=[SERVING]
    )
    serving: ServingModels = loaded.artifact(SERVING)
    features = batch_features(events)
    x = features.to_numpy()
    table = features.copy()
    table["segment"] = serving.predict_segments(x)
    table["segment_name"] = table["segment"].map(serving.names)
    table["predicted_spend_90d"] = serving.predict_spend(x)
    table["model_version"] = loaded.version
    table["as_of"] = pd.Timestamp(features.attrs["as_of_ms"], unit="ms", tz="UTC")
    return table.reset_index()
