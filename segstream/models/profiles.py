"""The customer-profile message contract: what the ``customer-profiles`` topic carries.

One record per customer on a compacted topic: key = the customer id, value = a JSON object of the
customer's attributes as they stand now (``{"age": 37.7, "income": 4.52, "owner": "yes"}``), the same
columns a ``--customers`` table has. A record replaces the customer's previous profile; a record with no
value (a tombstone) deletes it. A ``customer_id`` field in the value, if present, must equal the key.

Values are scalars: strings (at most 128 characters), finite numbers, booleans or null (missing). How a
model reads them (numeric or categorical, imputed when missing) is the bundle's attribute spec, so one
profile serves every model; attributes a model does not use are kept and ignored.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import orjson

from segstream.models.contract import MAX_EVENT_BYTES, MAX_ID_LENGTH, MAX_TEXT_LENGTH
from segstream.models.errors import EventValidationError
from segstream.models.events import is_valid_customer_id

MAX_ATTRIBUTES = 100


class Profile(NamedTuple):
    """A validated profile record: the customer and their attributes (None: delete the profile)."""

    customer_id: str
    attributes: dict[str, Any] | None


def _customer(key: bytes | str | None) -> str:
    if key is None or key in (b"", ""):
        raise EventValidationError("a profile record needs the customer id as its key", "missing_customer_id")
    text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
    if not is_valid_customer_id(text):
        raise EventValidationError(f"key {text[:64]!r}: not a valid customer id (1..{MAX_ID_LENGTH} printable "
                                   "characters, no whitespace)", "invalid_customer_id")  # fmt: skip
    return text


def _check_value(name: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise EventValidationError(f"attribute {name!r}: text longer than {MAX_TEXT_LENGTH} characters",
                                       "invalid_profile")  # fmt: skip
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > 1e15:
            raise EventValidationError(f"attribute {name!r}: {value!r} is not a finite number within +/-1e15",
                                       "invalid_profile")  # fmt: skip
        return
    raise EventValidationError(f"attribute {name!r}: expected a string, number, boolean or null, got "
                               f"{type(value).__name__}", "invalid_profile")  # fmt: skip


def parse_profile(key: bytes | str | None, value: bytes | str | None) -> Profile:
    """Decode and validate one profile record.

    Raises:
        EventValidationError: with a reason code (``missing_customer_id``, ``invalid_customer_id``,
            ``payload_too_large``, ``not_json``, ``not_an_object``, ``invalid_profile``).
    """
    customer_id = _customer(key)
    if value is None:
        return Profile(customer_id, None)
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > MAX_EVENT_BYTES:
        raise EventValidationError(f"payload too large: {len(raw)} bytes (limit {MAX_EVENT_BYTES})",
                                   "payload_too_large")  # fmt: skip
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventValidationError(f"not valid JSON: {exc}", "not_json") from None
    if not isinstance(payload, dict):
        raise EventValidationError(f"not a JSON object but {type(payload).__name__}", "not_an_object")
    named = payload.pop("customer_id", customer_id)
    if named != customer_id:
        raise EventValidationError(f"field 'customer_id' {str(named)[:64]!r} is not the record's key "
                                   f"{customer_id!r}", "invalid_profile")  # fmt: skip
    if len(payload) > MAX_ATTRIBUTES:
        raise EventValidationError(f"at most {MAX_ATTRIBUTES} attributes, got {len(payload)}", "invalid_profile")
    for name, attribute in payload.items():
        if not 0 < len(name) <= MAX_TEXT_LENGTH:
            raise EventValidationError(f"attribute names must be 1..{MAX_TEXT_LENGTH} characters",
                                       "invalid_profile")  # fmt: skip
        _check_value(name, attribute)
    return Profile(customer_id, payload)


def encode_profile(attributes: dict[str, Any]) -> bytes:
    """The value a producer sends (and the store keeps) for a customer's attributes."""
    return orjson.dumps(attributes)
