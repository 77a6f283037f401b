"""Errors of the benchmark. Every one derives from :class:`BenchError`."""

from __future__ import annotations

from segstream.models.errors import SegstreamError


class BenchError(SegstreamError):
    """Root of the benchmark's intentional errors (a phase did not finish, a process died, ...)."""
