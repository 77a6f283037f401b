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

from segstream.models.features import FEATURE_NAMES, batch_features
from segstream.trainer.naming import demote_unproven
from segstream.trainer.segmentation import SegmentationModel


def _period(seg: SegmentationModel, events: pd.DataFrame, end: pd.Timestamp, horizon_days: int,
            attributes: pd.DataFrame | None = None) -> dict[str, Any]:  # fmt: skip
    """Repeat rates per segment for customers scored at ``end - horizon``, judged on ``(cutoff, end]``.

    ``attributes``: the encoded customer attributes (index customer_id) the segmenter also takes; a
    customer's attributes do not change with the cutoff.
    """
    ts = pd.to_datetime(events["timestamp"], utc=True)
    cutoff = end - pd.Timedelta(days=horizon_days)
    known = events.loc[(ts <= end).to_numpy()]
    features = batch_features(known, as_of=cutoff)
    x = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    if attributes is not None:
        x = np.hstack([x, attributes.reindex(features.index).to_numpy(dtype=np.float64)])
    segments = seg.scorer.predict_segment(x)
    later = ((ts > cutoff) & (ts <= end) & (events["amount"] >= 0)).to_numpy()
    bought = features.index.isin(events.loc[later, "customer_id"].astype(str).unique())
    rates = pd.Series(bought).groupby(segments).mean()
    return {
        "cutoff": cutoff.isoformat(),
        "population_repeat_rate": float(bought.mean()),
        "repeat_rate_by_segment": {int(k): float(v) for k, v in rates.items()},
        "features": features,
    }


def check_names(seg: SegmentationModel, events: pd.DataFrame, horizon_days: int, periods: int = 2,
                attributes: pd.DataFrame | None = None) -> dict[str, Any]:  # fmt: skip
    """Demote promising names of ``seg`` (in place) that fail in any of the last ``periods`` held-out
    windows of ``horizon_days``; return what was measured and changed. ``attributes``: as for ``_period``
    (every customer of ``events`` must have a row)."""
    ts = pd.to_datetime(events["timestamp"], utc=True)
    last = ts.max()
    checked: list[dict[str, Any]] = []
    notes: list[str] = []
    for i in range(periods):
        end = last - pd.Timedelta(days=i * horizon_days)
        if (ts <= end - pd.Timedelta(days=horizon_days)).sum() == 0:
            break
        period = _period(seg, events, end, horizon_days, attributes)
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
