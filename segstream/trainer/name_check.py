"""Checking promising names against held-out time before a bundle carries them.

A segment called Champions, Loyal or Big spenders tells a marketer "these customers will come back". The
name is given from the segment's past (:mod:`segstream.trainer.naming`); here it is tested on the future
the training data already holds: every customer is scored as of ``last event - horizon`` with the fitted
segmenter, and each segment's share of customers who bought again in the horizon after that is compared
with the population's. A promising name whose segment did worse is replaced by the plain descriptive one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segstream.models.features import DAY_MS, FEATURE_NAMES
from segstream.trainer.history import History, as_history, change_between, features_at, to_timestamp
from segstream.trainer.naming import demote_unproven
from segstream.trainer.segmentation import SegmentationModel


def _period(seg: SegmentationModel, history: History, end_ms: int, horizon_days: int,
            attributes: pd.DataFrame | None = None) -> dict[str, Any]:  # fmt: skip
    """Repeat rates per segment for customers scored at ``end - horizon``, judged on ``(cutoff, end]``.

    A customer bought again when they made a purchase (a non-negative amount in cents, as the features
    count purchases) in the period. ``attributes``: the encoded customer attributes (index customer_id)
    the segmenter also takes; a customer's attributes do not change with the cutoff.
    """
    cutoff_ms = end_ms - horizon_days * DAY_MS
    features = features_at(history, cutoff_ms)
    x = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    if attributes is not None:
        x = np.hstack([x, attributes.reindex(features.index).to_numpy(dtype=np.float64)])
    segments = seg.scorer.predict_segment(x)
    bought = change_between(history, features.index, cutoff_ms, end_ms)["purchases"].to_numpy() > 0
    rates = pd.Series(bought).groupby(segments).mean()
    return {
        "cutoff": to_timestamp(cutoff_ms).isoformat(),
        "population_repeat_rate": float(bought.mean()),
        "repeat_rate_by_segment": {int(k): float(v) for k, v in rates.items()},
        "features": features,
    }


def check_names(seg: SegmentationModel, events: pd.DataFrame | History, horizon_days: int, periods: int = 2,
                attributes: pd.DataFrame | None = None) -> dict[str, Any]:  # fmt: skip
    """Demote promising names of ``seg`` (in place) that fail in any of the last ``periods`` held-out
    windows of ``horizon_days``; return what was measured and changed. ``events``: clean events or their
    :class:`~segstream.trainer.history.History`. ``attributes``: as for ``_period`` (every customer of
    ``events`` must have a row)."""
    history = as_history(events)
    checked: list[dict[str, Any]] = []
    notes: list[str] = []
    for i in range(periods):
        end_ms = history.last_ms - i * horizon_days * DAY_MS
        if history.first_ms > end_ms - horizon_days * DAY_MS:
            break
        period = _period(seg, history, end_ms, horizon_days, attributes)
        features = period.pop("features")
        names, demoted = demote_unproven(seg.names, period["repeat_rate_by_segment"],
                                         period["population_repeat_rate"], seg.profiles,
                                         features[list(FEATURE_NAMES)])  # fmt: skip
        seg.names = names
        seg.scorer.names = dict(names)
        notes += [f"{note} (period after {period['cutoff'][:10]})" for note in demoted]
        period["repeat_rate_by_segment"] = {str(k): v for k, v in period["repeat_rate_by_segment"].items()}
        checked.append(period)
    if not checked:
        return {"checked": False, "why": f"history shorter than the {horizon_days}-day horizon"}
    return {"checked": True, "horizon_days": int(horizon_days), "periods": checked, "demoted": notes}
