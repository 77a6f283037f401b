"""Errors of the streaming worker. Every one derives from :class:`StreamsError`."""

from __future__ import annotations

from segstream.models.errors import SegstreamError


class StreamsError(SegstreamError):
    """Root of the errors the streaming side raises on purpose."""


class NoModelError(StreamsError):
    """No usable model bundle: there is no ``current`` pointer, or the bundle it names was refused."""


class ReplayError(StreamsError):
    """A history file could not be produced to Kafka (the message names the broker and topic)."""


class StoreUnavailableError(StreamsError):
    """The state store stayed unreachable for longer than the caller was willing to wait."""
