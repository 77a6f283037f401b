"""Segment changes as a marketing system consumes them: hysteresis and deterministic change ids.

Shared by the stream and the offline campaign preview, so both decide and name changes the same way.
"""

from __future__ import annotations

import hashlib


def advance(
    segment: int | None, pending: int | None, pending_count: int, predicted: int, hold: int
) -> tuple[int | None, int | None, int, bool]:
    """One evaluation of hysteresis: ``(segment, pending, pending_count, changed)`` after it.

    The emitted segment changes only after the model's answer has differed from it, and agreed with
    itself, for ``hold`` consecutive evaluations; the first evaluation always emits.
    """
    if segment is None:
        return predicted, None, 0, True
    if predicted == segment:
        return segment, None, 0, False
    count = pending_count + 1 if pending == predicted else 1
    if count >= hold:
        return predicted, None, 0, True
    return segment, predicted, count, False


def change_id(
    customer_id: str, previous: int | None, segment: int, model_version: str, cause: str, basis: str
) -> str:
    """The id a consumer dedupes on: the same change emitted twice has one id.

    ``basis`` is what makes this change this change: the first new event of the customer in the
    evaluating batch (a redelivered batch starts at or before it), or ``as_of:<ms>`` for the sweep.
    """
    text = "\x1f".join([customer_id, str(previous), str(segment), model_version, cause, basis])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
