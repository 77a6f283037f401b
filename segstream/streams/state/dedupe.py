"""Duplicates inside one batch, which the stores settle before they touch state."""

from __future__ import annotations

from collections.abc import Sequence

from segstream.models.events import Event


def mark_repeats_in_batch(events: Sequence[Event]) -> tuple[list[Event], set[int]]:
    """Split a batch into its first occurrences and the positions of later repeats of an ``event_id``.

    A repeat inside the batch is a plain duplicate (``Delivery.DONE``); only first occurrences go to the
    store, so a redelivery that is still in flight is not scored twice in one batch.
    """
    seen: set[str] = set()
    unique: list[Event] = []
    repeats: set[int] = set()
    for i, event in enumerate(events):
        if event.event_id in seen:
            repeats.add(i)
        else:
            seen.add(event.event_id)
            unique.append(event)
    return unique, repeats
