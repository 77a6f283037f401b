"""Errors of the embedded dev stack. All derive from :class:`EmbeddedError`."""

from __future__ import annotations

from segstream.models.errors import SegstreamError


class EmbeddedError(SegstreamError):
    """Root of the embedded-stack errors."""


class BinaryNotFoundError(EmbeddedError):
    """A server binary (Tansu or redis-server) could not be found."""


class PortInUseError(EmbeddedError):
    """The port a service should listen on is taken by a process the stack did not start."""


class ServiceStartError(EmbeddedError):
    """A service exited or did not answer in time; the message names its log file."""


class PostgresStartError(ServiceStartError):
    """The embedded PostgreSQL (pgserver wheel binaries) is missing, or it did not come up; the message has its log."""
