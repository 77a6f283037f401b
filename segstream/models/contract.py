"""The one table of rules a transaction event must meet, read by the stream's validator and batch cleaning.

A valid event is defined once, here: the limits (:class:`EventLimits`), the fixed field shapes and the
stable reason codes every rejection carries. :mod:`segstream.models.events` applies the rules to one JSON
message on the worker's hot path; :mod:`segstream.models.event_frame` applies the same rules, in the same
order, to a whole table of rows for ``train``, ``score``, ``clean`` and ``replay``. A property test holds
the two equal row by row, reason included.

The time bounds are settings (``SEGSTREAM_EVENTS_MIN_TIMESTAMP`` / ``_MAX_TIMESTAMP``, and the worker's
future-skew limit): there is no calendar floor of our own, since real logs start in the 1990s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

MAX_EVENT_BYTES = 64 * 1024
# Deeper JSON than this is hostile, not a purchase: past ~1000 levels json cannot decode it (or encode the
# scored output), and one such message would otherwise kill every batch it lands in.
MAX_NESTING = 64
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 128
MAX_ABS_AMOUNT = 1e9
OPTIONAL_TEXT = ("currency", "channel", "category")

EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
DEFAULT_MIN_TIMESTAMP_MS = 0  # 1970-01-01T00:00:00Z
DEFAULT_MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)
# How far after the consumer's clock an event may be timed (the worker's default, and the trainer's): a day
# covers any time-zone mix-up.
DEFAULT_MAX_FUTURE_SKEW_S = 86_400.0

# Stable reason codes: dead letters, cleaning reports and replay summaries carry these, and
# ``segstream dead-letters replay --reason CODE`` selects by them. Never rename one; add new ones.
REASONS: dict[str, str] = {
    "empty_message": "empty message (no value)",
    "payload_too_large": "payload too large",
    "not_json": "not valid JSON",
    "not_an_object": "not a JSON object",
    "nested_too_deep": "nested too deep",
    "missing_event_id": "missing event id",
    "invalid_event_id": "invalid event id",
    "missing_customer_id": "missing customer id",
    "invalid_customer_id": "invalid customer id",
    "missing_timestamp": "missing timestamp",
    "invalid_timestamp": "unparseable timestamp",
    "timestamp_out_of_range": "timestamp out of range",
    "timestamp_in_future": "timestamp in the future",
    "missing_amount": "missing amount",
    "invalid_amount": "unparseable amount",
    "amount_out_of_range": "amount out of range",
    "invalid_quantity": "invalid quantity",
    "invalid_field": "invalid optional field",
    "invalid_lines": "invalid order lines",
    "invalid_profile": "invalid customer profile",
    "duplicate_event": "duplicate event",
}
# The order fields are judged in: the first broken rule names the reason, on both paths.
FIELD_ORDER = ("event_id", "customer_id", "timestamp", "amount", "quantity", *OPTIONAL_TEXT, "store_id", "lines")


class EventLimits(NamedTuple):
    """The configurable bounds of a valid event; one value of this serves the worker and cleaning alike.

    Attributes:
        min_ts_ms: Earliest accepted event time, epoch ms (inclusive).
        max_ts_ms: Latest accepted event time, epoch ms (exclusive).
        max_future_skew_ms: An event timed more than this after the reader's clock is rejected (one
            stamped years ahead by a typo would move every customer's as-of time); 0 turns it off.
    """

    min_ts_ms: int = DEFAULT_MIN_TIMESTAMP_MS
    max_ts_ms: int = DEFAULT_MAX_TIMESTAMP_MS
    max_future_skew_ms: int = int(DEFAULT_MAX_FUTURE_SKEW_S * 1000)

    def range_text(self) -> str:
        """The accepted time range in words, for messages."""
        return f"{iso_ms(self.min_ts_ms)}..{iso_ms(self.max_ts_ms)}"


DEFAULT_LIMITS = EventLimits()


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC (any year Python's datetime holds)."""
    try:
        return (EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
    except OverflowError:
        return f"{ts_ms} ms"


def describe(code: str) -> str:
    """The human label of a reason code (the code itself when unknown)."""
    return REASONS.get(code, code)
