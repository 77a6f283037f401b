"""Batch scoring of a history file with a bundle: the offline twin of what the worker does per event."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from segstream.models.bundle import load_bundle, read_manifest
from segstream.models.features import FEATURE_SPEC, FeatureSpec, batch_features
from segstream.models.preferences import batch_categories
from segstream.models.serving import SERVING, ServingModels
from segstream.trainer.attributes import CustomerTable, encode_customers
from segstream.trainer.errors import TrainerError
from segstream.trainer.preferences import favourites, preference_frame

# Names of the trainer's own artifacts in a bundle (beside the pure SERVING one).
SEGMENTATION = "segmentation"
PURCHASE = "purchase"


def score_customers(
    bundle: Path,
    events: pd.DataFrame | None,
    signing_key: bytes | None = None,
    customers: CustomerTable | None = None,
) -> pd.DataFrame:
    """Features, segment, segment name and predicted 90-day spend for every customer in ``events``.

    Features are computed as of the latest event in ``events`` (the batch as-of rule), with the same code
    the worker runs, and segments with the same scorer.

    A bundle trained with customer attributes needs ``customers`` (their attributes are encoded with the
    bundle's own spec; a customer missing from the table is imputed, as in training). A profile-only
    bundle scores every customer of the table and needs no events; it has no spend prediction.

    Raises:
        BundleError: The bundle fails verification or was trained on another feature spec.
        TrainerError: Attributes needed but no customer table given (or given but not used), or no events
            for a bundle that scores transactions.
    """
    # The expected hash is what this code computes for the spec the manifest names: equal only when the
    # behaviour formulas and the attribute encoding are the ones the bundle was trained with.
    expected = FeatureSpec.for_manifest(read_manifest(Path(bundle)).feature_spec)
    loaded = load_bundle(Path(bundle), expected_feature_hash=expected.hash, signing_key=signing_key, only=[SERVING])
    serving: ServingModels = loaded.artifact(SERVING)
    spec = serving.attribute_spec
    if spec is None and customers is not None:
        raise TrainerError(f"{loaded.path}: the bundle uses no customer attributes; drop --customers")
    if spec is not None and customers is None:
        raise TrainerError(f"{loaded.path}: the bundle needs the customer attributes {', '.join(spec.names)}; "
                           "pass the customer table with --customers FILE")  # fmt: skip
    if not serving.uses_behaviour:
        assert customers is not None and spec is not None
        encoded = encode_customers(spec, customers).frame
        x = encoded.to_numpy()
        table = encoded.copy()
        table["segment"] = serving.predict_segments(x)
        table["segment_name"] = table["segment"].map(serving.names)
        table["model_version"] = loaded.version
        return table.reset_index()
    if events is None:
        raise TrainerError(f"{loaded.path}: the bundle scores transactions; give the history (--data FILE)")
    features = batch_features(events)
    x = features.to_numpy()
    table = features.copy()
    prefs = serving.preference_spec
    if prefs is not None:
        # The same formula the worker applies to its folded categories.
        frame = preference_frame(prefs, batch_categories(events), features.index)
        x = np.hstack([x, frame.to_numpy()])
        table = pd.concat([table, frame], axis=1)
    if "category" in events.columns or "lines" in events.columns:
        table["favourite_category"] = favourites(events).reindex(table.index)
    if spec is not None and customers is not None:
        encoded = encode_customers(spec, customers, features.index).frame
        x = np.hstack([x, encoded.to_numpy()])
        table = pd.concat([table, encoded], axis=1)
    table["segment"] = serving.predict_segments(x)
    table["segment_name"] = table["segment"].map(serving.names)
    table["predicted_spend_90d"] = serving.predict_spend(x)
    table["model_version"] = loaded.version
    table["as_of"] = pd.Timestamp(features.attrs["as_of_ms"], unit="ms", tz="UTC")
    return table.reset_index()


__all__ = ["FEATURE_SPEC", "PURCHASE", "SEGMENTATION", "score_customers"]
