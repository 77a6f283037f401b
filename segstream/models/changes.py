"""Segment changes as a marketing system consumes them: hysteresis and deterministic change ids.

Shared by the stream and the offline campaign preview, so both decide and name changes the same way.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any


def advance(
    segment: int | None,
    pending: int | None,
    pending_count: int,
    predicted: int,
    hold: int,
    *,
    pending_since_ms: int = 0,
    now_ms: int = 0,
    dwell_ms: int = 0,
) -> tuple[int | None, int | None, int, int, bool]:
    """One evaluation of hysteresis: ``(segment, pending, pending_count, pending_since_ms, changed)``.

    The emitted segment changes only after the model's answer has differed from it, and agreed with
    itself, for ``hold`` consecutive evaluations and, with a dwell, for ``dwell_ms`` of event time since it
    was first seen (``now_ms`` is the evaluation's as-of time). The first evaluation always emits.
    """
    if segment is None:
        return predicted, None, 0, 0, True
    if predicted == segment:
        return segment, None, 0, 0, False
    if pending == predicted:
        count, since = pending_count + 1, pending_since_ms
    else:
        count, since = 1, now_ms
    if count >= hold and now_ms - since >= dwell_ms:
        return predicted, None, 0, 0, True
    return segment, predicted, count, since, False


def change_id(
    customer_id: str, previous: int | None, segment: int, model_version: str, cause: str, basis: str
) -> str:
    """The id a consumer dedupes on: the same change emitted twice has one id.

    ``basis`` is what makes this change this change: the first new event of the customer in the
    evaluating batch (a redelivered batch starts at or before it), or ``as_of:<ms>`` for the sweep.
    """
    text = "\x1f".join([customer_id, str(previous), str(segment), model_version, cause, basis])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


DEFAULT_FLAP_WINDOW_DAYS = 7.0
DEFAULT_FLAP_MEMORY = 200_000


class FlapCounter:
    """Counts changes that return a customer to the segment it just left within a window of event time.

    A flap is A -> B followed by B -> A within ``window_days``: noise a campaign would chase. The worker
    remembers each customer's latest change (at most ``memory`` customers, least recently changed
    forgotten first), so the figure is exact for a worker's own customers since it started; ``flap_rate``
    runs the same counting over a list of changes (a topic read back, a preview).
    """

    def __init__(self, window_days: float = DEFAULT_FLAP_WINDOW_DAYS, memory: int = DEFAULT_FLAP_MEMORY) -> None:
        self.window_ms = int(window_days * 86_400_000)
        self.memory = memory
        self.changes = 0
        self.flaps = 0
        self._last: OrderedDict[str, tuple[int | None, int, int]] = OrderedDict()

    def observe(self, customer_id: str, previous: int | None, segment: int, event_time_ms: int) -> bool:
        """Count one change; True when it is a flap."""
        self.changes += 1
        last = self._last.pop(customer_id, None)
        flap = (
            last is not None
            and previous is not None
            and last[0] == segment
            and last[1] == previous
            and 0 <= event_time_ms - last[2] <= self.window_ms
        )
        self.flaps += int(flap)
        self._last[customer_id] = (previous, segment, event_time_ms)
        if len(self._last) > self.memory:
            self._last.popitem(last=False)
        return flap

    @property
    def rate(self) -> float:
        """Flaps per change (0 before any change)."""
        return self.flaps / self.changes if self.changes else 0.0


def flap_rate(changes: Iterable[Mapping[str, Any]], window_days: float = DEFAULT_FLAP_WINDOW_DAYS) -> tuple[int, float]:
    """(changes, flap rate) of ``segment-changes`` records, counted in event-time order."""
    counter = FlapCounter(window_days, memory=10**9)
    for c in sorted(changes, key=lambda c: (int(c["event_time_ms"]), str(c["customer_id"]))):
        counter.observe(str(c["customer_id"]), c.get("previous_segment"), int(c["segment"]), int(c["event_time_ms"]))
    return counter.changes, counter.rate
