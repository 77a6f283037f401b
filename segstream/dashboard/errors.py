"""Errors of the dashboard: a bundle that cannot be opened, live state that cannot be read."""

from __future__ import annotations

from segstream.models.errors import SegstreamError


class DashboardError(SegstreamError):
    """Base of every error the dashboard raises on purpose (shown to the user as a message)."""


class LiveStateUnavailable(DashboardError):
    """Redis or Kafka cannot be reached or holds nothing yet; pages fall back to the bundle."""
