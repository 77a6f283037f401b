"""One event contract: every row batch cleaning keeps, the worker accepts, and each refusal has one reason.

Random rows of file cells go through both paths: cleaning (:func:`prepare_rows`, the vectorised rules
that ``train``, ``score`` and ``clean`` use) and the worker's own parse and checks on the JSON a replay
sends for that row. The two must agree row by row on accept/refuse and on the reason code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.models.contract import REASONS, EventLimits
from segstream.streams.replay import records_from_frame, worker_verdict
from segstream.trainer.cleaning import clean_prepared, prepare_rows

NOW = pd.Timestamp("2026-12-01T12:00:00Z")
NOW_MS = NOW.value // 1_000_000
COLUMNS = ["event_id", "customer_id", "timestamp", "amount", "quantity", "category", "store_id"]

odd_ids = st.sampled_from(["C-7", " padded ", "", "   ", "a b", "tab\tin", "x" * 128, "x" * 129, "é", "line\nbreak"])
plain_ids = st.integers(0, 40).map(lambda n: f"e{n}")
# Mostly valid ids, so that most rows reach the timestamp, amount and optional-field rules.
ids = st.one_of(plain_ids, plain_ids, plain_ids, plain_ids, odd_ids, st.text(max_size=6), st.none())
moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
timestamps = (
    st.none()
    | st.sampled_from(["", "yesterday", "2025-13-01T00:00:00Z", "12/1/2010 8:26", "-1", "0"])
    | moments.map(lambda d: d.isoformat())  # naive: a file's naive time is UTC
    | st.tuples(moments, st.integers(-14, 14)).map(
        lambda p: p[0].replace(tzinfo=UTC).astimezone(UTC).replace(tzinfo=None).isoformat() + f"{p[1]:+03d}:00")
    | st.integers(-(10**13), 10**13).map(str)
    | st.just(str(NOW_MS + 86_400_000)) | st.just(str(NOW_MS + 86_400_001))
)  # fmt: skip
numbers = (
    st.none()
    | st.sampled_from(["", "abc", "nan", "inf", "-inf", "1e10", "1e9", "-1e9", "1000000000.01", "12,50", " 3 "])
    | st.floats(-2e9, 2e9, allow_nan=False).map(repr)
    | st.integers(-(2 * 10**9), 2 * 10**9).map(str)
)  # fmt: skip
texts = st.none() | st.text(max_size=4) | st.sampled_from(["y" * 128, "y" * 129, "  z  "])
rows = st.lists(st.tuples(ids, ids, timestamps, numbers, numbers, texts, texts), min_size=1, max_size=30)
limits = st.builds(
    EventLimits,
    min_ts_ms=st.sampled_from([0, -2_208_988_800_000, 946_684_800_000]),  # 1970, 1900, 2000
    max_ts_ms=st.sampled_from([4_102_444_800_000, NOW_MS + 10 * 86_400_000]),
    max_future_skew_ms=st.sampled_from([0, 86_400_000]),
)


def _frame(cells: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(cells, columns=COLUMNS, dtype=object)
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    return df


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=rows, limit=limits)
def test_cleaning_and_the_worker_agree_on_every_row_and_reason(cells, limit):
    prepared = prepare_rows(_frame(cells), "random.csv", limits=limit, now=NOW)
    for i, code in enumerate(prepared.codes):
        if code == "duplicate_event":
            continue  # the worker skips a repeat of a done event id; it is no dead letter
        record = prepared.record(i)
        assert worker_verdict(record, limit, NOW_MS) == code, (cells[i], record)
        assert code == "" or code in REASONS
    kept = prepared.codes == ""
    if not kept.any():
        return
    clean, report = clean_prepared(prepared, "random.csv")
    assert report.kept_rows == int(kept.sum())
    assert sum(report.dropped.values()) == len(cells) - report.kept_rows
    # The records a replay sends for the kept rows are exactly those rows, and the worker takes each one.
    sent = records_from_frame(clean)
    assert sorted(r["event_id"] for r in sent) == sorted(prepared.event_id[kept])
    assert all(worker_verdict(r, limit, NOW_MS) == "" for r in sent)


def test_a_1997_purchase_is_valid_on_both_paths_by_default():
    cells = [("p1", "C1", "1997-01-01", "29.33", "2", None, None)]
    prepared = prepare_rows(_frame(cells), "cdnow.csv", limits=EventLimits(), now=NOW)
    assert list(prepared.codes) == [""]
    clean, _ = clean_prepared(prepared, "cdnow.csv")
    (record,) = records_from_frame(clean)
    assert record["timestamp"] == 852_076_800_000 and worker_verdict(record, EventLimits(), NOW_MS) == ""


def test_a_raised_floor_refuses_on_both_paths_with_the_same_code():
    strict = EventLimits(min_ts_ms=946_684_800_000)
    cells = [("p1", "C1", "1997-01-01", "29.33", None, None, None)]
    prepared = prepare_rows(_frame(cells), "cdnow.csv", limits=strict, now=NOW)
    assert list(prepared.codes) == ["timestamp_out_of_range"]
    assert worker_verdict(prepared.record(0), strict, NOW_MS) == "timestamp_out_of_range"


def test_future_rows_are_judged_against_the_same_clock_and_skew():
    ahead = (NOW + timedelta(days=2)).isoformat()
    cells = [("p1", "C1", ahead, "1", None, None, None)]
    on = EventLimits(max_future_skew_ms=86_400_000)
    prepared = prepare_rows(_frame(cells), "f.csv", limits=on, now=NOW)
    assert list(prepared.codes) == ["timestamp_in_future"]
    assert worker_verdict(prepared.record(0), on, NOW_MS) == "timestamp_in_future"
    off = on._replace(max_future_skew_ms=0)
    assert list(prepare_rows(_frame(cells), "f.csv", limits=off, now=NOW).codes) == [""]
    assert np.array_equal(prepare_rows(_frame(cells * 2), "f.csv", limits=off, now=NOW).codes, ["", "duplicate_event"])


def _lines_for(amount: str | None, choice: int, split: float) -> str | None:
    """A ``lines`` cell for a row: absent, broken in one of several ways, or a split that adds up exactly."""
    if choice == 0:
        return None
    if choice == 1:
        return "not json"
    if choice == 2:
        return "[]"
    if choice == 3:
        return '[{"category": "", "amount": 1}]'
    try:
        total = round(float(amount) * 100) if amount is not None else None
    except (ValueError, OverflowError):
        total = None
    if total is None or not -(10**11) < total < 10**11:
        return '[{"category": "Chairs", "amount": 1.5}]'
    first = int(total * split)
    lines = [{"category": "Chairs", "amount": first / 100}, {"category": "Binders", "amount": (total - first) / 100}]
    if choice == 4:
        lines[1]["amount"] += 0.01  # a cent off: the lines must add up exactly
    import json

    return json.dumps(lines)


line_rows = st.lists(
    st.tuples(plain_ids, plain_ids, timestamps, numbers, st.integers(0, 6), st.floats(0, 1)), min_size=1, max_size=20
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=line_rows)
def test_order_lines_are_judged_alike_on_both_paths(cells):
    frame = pd.DataFrame(
        [(e, c, t, a, None, None, None, _lines_for(a, choice, split)) for e, c, t, a, choice, split in cells],
        columns=[*COLUMNS, "lines"], dtype=object,
    )  # fmt: skip
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    limit = EventLimits(max_future_skew_ms=0)
    prepared = prepare_rows(frame, "lines.csv", limits=limit, now=NOW)
    for i, code in enumerate(prepared.codes):
        if code != "duplicate_event":
            assert worker_verdict(prepared.record(i), limit, NOW_MS) == code, (cells[i], prepared.record(i))
    kept = prepared.codes == ""
    if kept.any():
        clean, _ = clean_prepared(prepared, "lines.csv")
        assert all(worker_verdict(r, limit, NOW_MS) == "" for r in records_from_frame(clean))


def test_lines_that_do_not_add_up_are_refused_with_their_own_reason():
    good = '[{"category": "Chairs", "amount": 20.00}, {"category": "Binders", "amount": 9.33}]'
    bad = '[{"category": "Chairs", "amount": 20.00}, {"category": "Binders", "amount": 9.34}]'
    cells = [("p1", "C1", "1997-01-01", "29.33", None, None, None, good),
             ("p2", "C1", "1997-01-02", "29.33", None, None, None, bad)]  # fmt: skip
    frame = pd.DataFrame(cells, columns=[*COLUMNS, "lines"], dtype=object)
    frame.index = pd.RangeIndex(1, 3, name="row")
    prepared = prepare_rows(frame, "o.csv", limits=EventLimits(), now=NOW)
    assert list(prepared.codes) == ["", "invalid_lines"]
    assert "invalid_lines" in REASONS
    assert worker_verdict(prepared.record(1), EventLimits(), NOW_MS) == "invalid_lines"
    clean, _ = clean_prepared(prepared, "o.csv")
    (record,) = records_from_frame(clean)
    assert record["lines"] == [{"category": "Chairs", "amount": 20.0}, {"category": "Binders", "amount": 9.33}]
