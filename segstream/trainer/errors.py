"""Errors of the offline trainer. Every one derives from :class:`TrainerError`.

The CLI prints the message and exits 2, so each message names the file and, where it applies, the
column and the 1-based data row (the row number a user sees in a spreadsheet, header not counted).
"""

from __future__ import annotations

from segstream.models.errors import SegstreamError


class TrainerError(SegstreamError):
    """Root of the trainer's intentional errors."""


class DataFileError(TrainerError):
    """A transaction file cannot be read or does not have the columns and values the trainer needs."""
