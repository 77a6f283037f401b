"""The event contract: good events parse exactly; every bad one fails with a reason, never a crash."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.contract import DEFAULT_MAX_TIMESTAMP_MS as MAX_TIMESTAMP_MS
from segstream.models.contract import DEFAULT_MIN_TIMESTAMP_MS as MIN_TIMESTAMP_MS
from segstream.models.contract import OPTIONAL_TEXT as _OPTIONAL_TEXT
from segstream.models.errors import EventValidationError
from segstream.models.events import (
    MAX_EVENT_BYTES,
    Event,
    _identifier,
    _number,
    check_not_ahead,
    is_valid_customer_id,
    parse_event,
    parse_timestamp,
    validate_payload,
)
from segstream.models.features import to_cents

GOOD = {"event_id": "e1", "customer_id": "C001", "timestamp": "2025-03-01T10:15:00+01:00", "amount": 12.5}


def _bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_good_event_parses_with_unknown_fields_passed_through():
    event = parse_event(_bytes({**GOOD, "loyalty_tier": "gold", "quantity": 2}))
    assert event.ts_ms == 1_740_820_500_000  # 09:15 UTC
    assert event.amount_cents == 1250 and not event.is_return
    assert event.payload["loyalty_tier"] == "gold"


def test_epoch_millis_and_z_suffix_agree():
    assert parse_timestamp(1_740_820_500_000) == parse_timestamp("2025-03-01T09:15:00Z")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_bytes({k: v for k, v in GOOD.items() if k != "amount"}), "missing field 'amount'"),
        (_bytes({**GOOD, "amount": "12"}), "expected a number"),
        (_bytes({**GOOD, "amount": True}), "expected a number"),
        (b'{"event_id":"e","customer_id":"c","timestamp":1740820500000,"amount":NaN}', "not a finite"),
        (b'{"event_id":"e","customer_id":"c","timestamp":1740820500000,"amount":1e400}', "not a finite"),
        (_bytes({**GOOD, "amount": 10**400}), "outside"),
        (_bytes({**GOOD, "timestamp": "2025-03-01T10:15:00"}), "no UTC offset"),
        (_bytes({**GOOD, "timestamp": "yesterday"}), "not ISO 8601"),
        (_bytes({**GOOD, "timestamp": -1}), "outside 1970-01-01"),
        (_bytes({**GOOD, "timestamp": "2999-01-01T00:00:00+00:00"}), "outside"),
        (_bytes({**GOOD, "customer_id": 17}), "expected a string"),
        (_bytes({**GOOD, "customer_id": ""}), "missing field 'customer_id'"),
        (_bytes({**GOOD, "customer_id": "a b"}), "whitespace"),
        (_bytes({**GOOD, "event_id": "x" * 500}), "length"),
        (_bytes({**GOOD, "channel": 3}), "'channel'"),
        (_bytes({**GOOD, "filler": "x" * MAX_EVENT_BYTES}), "too large"),
    ],
)
def test_bad_events_fail_with_a_reason(raw, reason):
    with pytest.raises(EventValidationError, match=reason):
        parse_event(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_crash(raw):
    try:
        parse_event(raw)
    except EventValidationError:
        pass


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(sorted(GOOD) + ["quantity", "store_id"]), _json_values))
def test_random_field_values_either_parse_or_fail_cleanly(overrides):
    try:
        event = parse_event(json.dumps({**GOOD, **overrides}, allow_nan=True))
    except EventValidationError:
        return
    assert is_valid_customer_id(event.customer_id)


def _validate_by_the_helpers(payload: dict[str, object]) -> Event:
    """validate_payload before its inline fast path: every field through its helper, in the same order."""
    get = payload.get
    event_id = _identifier(get("event_id"), "event_id")
    customer_id = _identifier(get("customer_id"), "customer_id")
    ts_ms = parse_timestamp(get("timestamp"))
    amount = _number(get("amount"), "amount", required=True)
    _number(get("quantity"), "quantity", required=False)
    for name in _OPTIONAL_TEXT:
        value = get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= 128):
            raise EventValidationError(f"field '{name}': expected a string of at most 128 chars", "invalid_field")
    store = get("store_id")
    if store is not None and not ((isinstance(store, str) and len(store) <= 128) or type(store) is int):
        raise EventValidationError("field 'store_id': expected a string of at most 128 chars or an integer",
                                   "invalid_field")
    return Event(event_id, customer_id, ts_ms, amount, to_cents(amount), payload)  # type: ignore[arg-type]


_FIELDS = ("event_id", "customer_id", "timestamp", "amount", "quantity", "currency", "channel", "category", "store_id")
_TIMESTAMP_EDGES = (MIN_TIMESTAMP_MS - 1, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1, MAX_TIMESTAMP_MS)
_AMOUNT_EDGES = (10**9, -(10**9), 10**9 + 1)
_edge_values = (
    st.none()
    | st.booleans()
    | st.text(max_size=4)
    | st.sampled_from(["", "a b", "a\tb", "x" * 128, "x" * 129])
    | st.integers(-(10**20), 10**20)
    | st.sampled_from(_TIMESTAMP_EDGES + _AMOUNT_EDGES)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.lists(st.integers(), max_size=2)
)


@settings(max_examples=1000, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(_FIELDS), _edge_values))
def test_the_inline_fast_path_agrees_with_the_field_helpers(fields):
    payload = {**GOOD, "timestamp": MIN_TIMESTAMP_MS, **fields}
    try:
        expected: Event | tuple[str, str] = _validate_by_the_helpers(payload)
    except EventValidationError as exc:
        expected = (str(exc), exc.code)
    try:
        got: Event | tuple[str, str] = validate_payload(payload)
    except EventValidationError as exc:
        got = (str(exc), exc.code)
    assert got == expected
    if isinstance(got, Event):
        assert type(got.amount) is float and type(got.ts_ms) is int


def test_an_event_up_to_the_limit_ahead_passes_and_one_beyond_it_says_how_far_ahead_it_is():
    event = parse_event(_bytes({**GOOD, "timestamp": 1_800_000_000_000}))
    assert check_not_ahead(event, 1_800_000_000_000 - 86_400_000, 86_400_000) is event
    with pytest.raises(EventValidationError) as err:
        check_not_ahead(event, 1_800_000_000_000 - 86_400_001, 86_400_000)
    assert str(err.value) == (
        "field 'timestamp': 2027-01-15T08:00:00.000+00:00 is 24.0 hours ahead of the worker's clock "
        "(at most 24 hours are accepted)"
    )


def test_customer_id_rule():
    assert is_valid_customer_id("C0001") and is_valid_customer_id("kunde-ü@shop")
    assert not is_valid_customer_id("") and not is_valid_customer_id("a\nb")


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=20) | st.sampled_from(["a\u00a0b", "a\u2028b", "a\x1fb", "a\tb", "a b", "\u3000"]))
def test_customer_id_rule_is_printable_and_no_whitespace_of_any_kind(value):
    # The check looks for " " only after isprintable(); this pins that no other whitespace gets through.
    expected = 1 <= len(value) <= 128 and value.isprintable() and not any(ch.isspace() for ch in value)
    assert is_valid_customer_id(value) == expected


@settings(max_examples=200, deadline=None)
@given(
    amount=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.none(),
    quantity=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.text(max_size=3),
)
def test_amount_and_quantity_are_finite_numbers_within_bounds(amount, quantity):
    raw = json.dumps({**GOOD, "amount": amount, "quantity": quantity}, allow_nan=True)
    ok = all(
        v is not None and not isinstance(v, bool | str) and math.isfinite(float(v)) and abs(v) <= 1e9
        for v in (amount, quantity)
    )
    try:
        event = parse_event(raw)
    except EventValidationError:
        assert not ok
        return
    assert ok and event.amount == float(amount) and isinstance(event.amount, float)


def test_deep_nesting_is_rejected_not_a_crash():
    from segstream.models.events import MAX_NESTING

    deep = b'{"event_id":"e","customer_id":"c","timestamp":1740820500000,"amount":1,"x":' + b"[" * 30000
    deep += b"]" * 30000 + b"}"
    with pytest.raises(EventValidationError, match="nested deeper"):
        parse_event(deep)
    nested = {**GOOD, "x": []}
    inner = nested["x"]
    for _ in range(MAX_NESTING):
        inner.append([])
        inner = inner[0]
    with pytest.raises(EventValidationError, match="nested deeper"):
        parse_event(_bytes(nested))
