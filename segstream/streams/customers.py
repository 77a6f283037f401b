"""One customer's live picture as JSON: features as of the watermark, segment, recent changes.

Shared by the worker's ``/customers/{id}`` endpoint and the ``segstream customer`` command.
"""

from __future__ import annotations

from typing import Any

from segstream.models.customer_state import aggregates_matrix
from segstream.models.features import FEATURE_NAMES, NO_TIMESTAMP, features_from_aggregates
from segstream.models.preferences import preference_summary
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.outputs import iso_ms
from segstream.streams.state.base import StateStore


async def customer_document(
    store: StateStore, customer_id: str, model: ActiveModel | None = None
) -> dict[str, Any] | None:
    """The customer's features, segment and recent changes, or None when the store has never seen them.

    Features are computed as of the stream watermark (the as-of rule), with the shared feature code.
    ``segment_name`` comes from ``model`` (the active bundle) when given.
    """
    watermark = await store.watermark()
    views = await store.view([customer_id], watermark)
    view = views.get(customer_id)
    if view is None:
        return None
    agg = view.aggregates
    as_of = max(watermark, agg["last_ts"])
    row = features_from_aggregates(aggregates_matrix([agg]), as_of)[0]
    features = {name: float(v) for name, v in zip(FEATURE_NAMES, row, strict=True)}
    record = view.segment
    names = model.names if model is not None else {}
    history = await store.history(customer_id)
    for item in history:
        for key in ("segment", "previous_segment"):
            seg = item.get(key)
            item[f"{key}_name"] = None if seg is None else names.get(int(seg))  # type: ignore[call-overload]
        event_time = item.get("event_time_ms")
        if isinstance(event_time, int):
            item["event_time"] = iso_ms(event_time)
    return {
        "customer_id": customer_id,
        "as_of": iso_ms(as_of),
        "as_of_ms": as_of,
        "frequency": features["frequency"],
        "monetary": features["monetary"],
        "recency_days": features["recency_days"],
        "first_purchase_at": _ts(agg["first_purchase_ts"]),
        "last_purchase_at": _ts(agg["last_purchase_ts"]),
        "first_event_at": _ts(agg["first_ts"]),
        "last_event_at": _ts(agg["last_ts"]),
        "segment": record.segment,
        "segment_name": None if record.segment is None else names.get(record.segment),
        "pending_segment": record.pending,
        "pending_count": record.pending_count,
        "model_version": record.model_version or None,
        "scored_as_of": _ts(record.scored_as_of_ms) if record.scored_as_of_ms else None,
        "features": features,
        "aggregates": dict(agg),
        "preferences": preference_summary(view.categories or {}),
        "profile": (await store.profiles([customer_id])).get(customer_id),
        "recent_changes": history,
    }


def _ts(ms: int) -> str | None:
    return None if ms == NO_TIMESTAMP else iso_ms(ms)
