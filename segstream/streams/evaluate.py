"""Score customers as of a time and apply hysteresis: the decision shared by the batch path and the sweep.

Hysteresis: a customer's emitted segment changes only after the model's answer has differed from it, and
agreed with itself, for ``hold`` consecutive evaluations (``hold = 1`` switches at once). An evaluation is
one scoring of one customer: once per batch that has events of the customer, and once per inactivity
sweep that picks the customer. The first evaluation of a customer always emits, with no previous segment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.models.changes import advance
from segstream.models.customer_state import aggregates_matrix
from segstream.models.errors import FeatureSpecError
from segstream.models.features import DAY_MS, FEATURE_NAMES, features_from_aggregates
from segstream.models.scoring import explain_path
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.state.base import CustomerView, SegmentChange, SegmentRecord

log = logging.getLogger("segstream.worker")


@dataclass
class Evaluation:
    """The outcome of scoring one customer."""

    customer_id: str
    predicted: int
    record: SegmentRecord
    change: SegmentChange | None
    next_check_ms: int


def step(
    record: SegmentRecord, predicted: int, hold: int, *, now_ms: int = 0, dwell_ms: int = 0
) -> tuple[SegmentRecord, bool]:
    """Advance one customer's segment record by one evaluation (see :func:`segstream.models.changes.advance`).

    Returns:
        The new record (segment, pending, pending_count and pending_since; version and as-of left to the
        caller) and whether the emitted segment changed.
    """
    # Built directly rather than with dataclasses.replace, which was ~2% of the worker's CPU.
    segment, pending, count, since, changed = advance(
        record.segment, record.pending, record.pending_count, predicted, hold,
        pending_since_ms=record.pending_since_ms, now_ms=now_ms, dwell_ms=dwell_ms,
    )  # fmt: skip
    return SegmentRecord(segment, pending, count, record.model_version, record.scored_as_of_ms, since), changed


def feature_matrix(
    views: Mapping[str, CustomerView],
    as_of_ms: int,
    model: ActiveModel | None = None,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Customer ids and their model input rows as of T (views carry aggregates already as of T).

    The behaviour features, then what the model reads besides (product preferences from the views'
    categories, attributes from ``profiles``; a customer without a profile gets the model's defaults).
    """
    ids = list(views)
    agg = aggregates_matrix([views[c].aggregates for c in ids])
    x = features_from_aggregates(agg, as_of_ms)
    if model is not None and (model.needs_attributes or model.needs_categories):
        x = model.serving.input_rows(
            x,
            categories=[views[c].categories or {} for c in ids],
            profiles=[(profiles or {}).get(c) or {} for c in ids],
        )
    return ids, x


def input_names(model: ActiveModel) -> tuple[str, ...]:
    """The names of a model input row's columns (the behaviour features for a behaviour-only model)."""
    return tuple(getattr(model.serving, "input_names", FEATURE_NAMES))


def predict_rows(model: ActiveModel, x: np.ndarray) -> np.ndarray:
    """Segment ids of the rows; a row the model cannot score (non-finite feature) gets -1."""
    if len(x) == 0:
        return np.empty(0, dtype=np.int64)
    try:
        return np.asarray(model.predict(x), dtype=np.int64)
    except FeatureSpecError:
        out = np.full(len(x), -1, dtype=np.int64)
        for i in range(len(x)):
            try:
                out[i] = int(model.predict(x[i : i + 1])[0])
            except FeatureSpecError as exc:
                log.error("cannot score a feature row (%s); keeping the previous segment", exc)
        return out


def evaluate(
    views: Mapping[str, CustomerView],
    model: ActiveModel,
    as_of_ms: int,
    *,
    hold: int,
    cause: str,
    recheck_after_ms: int,
    triggers: Mapping[str, tuple[str, int]] | None = None,
    bases: Mapping[str, str] | None = None,
    dwell_ms: int = 0,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Evaluation]:
    """Score customers as of T and decide, with hysteresis, which segments change.

    Args:
        views: Customer views from the store, aggregates as of ``as_of_ms``.
        model: The model to score with.
        as_of_ms: T, the stream watermark.
        hold: Hysteresis: evaluations a new segment must hold.
        cause: ``"purchase"`` or ``"inactivity"``, copied to changes.
        recheck_after_ms: The inactivity sweep looks at the customer again once the watermark passes
            ``as_of_ms + recheck_after_ms`` with no new event.
        triggers: Customer -> (event_id, event time) of the event that caused the evaluation; without
            one a change carries no event id and the event time T.
        bases: Customer -> what makes a change of it unique (see ``SegmentChange.basis``).
        dwell_ms: Event time a new segment must hold before it is emitted (0: off). A customer with a
            pending segment is checked again by the sweep when its dwell ends.
        profiles: Customer -> stored attributes, for a model that reads them.

    Returns:
        One evaluation per customer that could be scored.
    """
    ids, x = feature_matrix(views, as_of_ms, model, profiles)
    names = input_names(model)
    predicted = predict_rows(model, x).tolist()  # plain ints: indexing a numpy array per customer costs
    version, next_check_ms = model.version, as_of_ms + recheck_after_ms
    out: list[Evaluation] = []
    for i, cid in enumerate(ids):
        segment = predicted[i]
        if segment < 0:
            continue
        stored = views[cid].segment
        record, changed = step(stored, segment, hold, now_ms=as_of_ms, dwell_ms=dwell_ms)
        record.model_version = version  # the model that made the latest evaluation
        record.scored_as_of_ms = as_of_ms
        change = None
        if changed:
            event_id, event_time = (triggers or {}).get(cid, (None, as_of_ms))
            change = SegmentChange(
                customer_id=cid,
                previous_segment=stored.segment,
                segment=segment,
                model_version=version,
                event_time_ms=int(event_time),
                cause=cause,
                event_id=event_id,
                features=dict(zip(names, x[i].tolist(), strict=True)),
                basis=(bases or {}).get(cid, ""),
            )
            change.reason, change.tree_agrees = explain(model, x[i], segment)
        check = next_check_ms
        if dwell_ms and record.pending is not None:
            check = min(check, record.pending_since_ms + dwell_ms)
        out.append(Evaluation(cid, segment, record, change, check))
    return out


def explain(model: ActiveModel, row: np.ndarray, segment: int) -> tuple[str, bool | None]:
    """The tree's decision path for one row in words, and whether the tree agrees with the segmenter.

    Only changes are explained (a few per batch), so the per-row tree walk costs nothing on the hot path.
    """
    tree = getattr(model.serving, "tree", None)
    if tree is None:
        return "", None
    try:
        return explain_path(tree.decision_path(row)), bool(int(tree.predict(row.reshape(1, -1))[0]) == segment)
    except FeatureSpecError:
        return "", None


def days_to_ms(days: float) -> int:
    """Days as milliseconds."""
    return int(days * DAY_MS)
