"""Errors of the shared core. Every segstream error derives from :class:`SegstreamError`.

The CLI turns any ``SegstreamError`` into its message and exit code 2, so a message must make sense to
a user on its own (name the file, column, row or field it is about).
"""

from __future__ import annotations


class SegstreamError(Exception):
    """Root of every error segstream raises on purpose."""

    exit_code = 2


class EventValidationError(SegstreamError):
    """An event does not satisfy the event contract.

    Attributes:
        code: The stable reason code (a key of :data:`segstream.models.contract.REASONS`), which dead letters
            and cleaning reports carry beside the message.
    """

    def __init__(self, message: str, code: str = "invalid_event") -> None:
        super().__init__(message)
        self.code = code


class BundleError(SegstreamError):
    """A model bundle is missing, tampered with, unsigned or incompatible."""


class FeatureSpecError(SegstreamError):
    """Features were built with a different spec than the one expected."""
