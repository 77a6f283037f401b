"""Cleaning raw transaction rows: parsing, each drop reason counted exactly, the report, column errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.contract import EventLimits
from segstream.trainer.cleaning import (
    CleaningReport,
    clean_transactions,
    parse_amounts,
    parse_timestamps,
)
from segstream.trainer.errors import DataFileError

T0 = "2025-03-01T10:15:00+00:00"


def frame(rows: list[tuple], row_index: bool = True, **extra) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["event_id", "customer_id", "timestamp", "amount"], dtype=object)
    for name, values in extra.items():
        df[name] = values
    if row_index:
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    return df


def test_each_reason_counted_exactly():
    raw = frame([
        ("e1", " C1 ", T0, "10.00"),                     # kept (customer stripped)
        ("e2", None, T0, "1.00"),                        # missing customer
        ("e3", "   ", T0, "1.00"),                       # blank customer
        ("e4", "C2", "not a date", "1.00"),              # bad timestamp
        ("e5", "C2", T0, "abc"),                         # bad amount
        ("e6", "C2", T0, "inf"),                         # bad amount
        ("e1", "C3", T0, "99.00"),                       # duplicate of e1 -> first kept
        ("e7", "C3", "2025-03-01T11:00:00+02:00", "0"),  # zero amount, kept
        ("e8", "C3", "1740824100000", "-5.5"),           # return, epoch ms, kept
        (None, "C3", T0, "1"),                           # missing event id
        ("e9", None, "junk", "junk"),                    # counted once, under the first reason
        ("e10", "C4", "2099-01-01T00:00:00Z", "abc"),    # in the future and a bad amount: the worker names
                                                         # the amount (the future check comes last)
    ])
    out, report = clean_transactions(raw, "t.csv")
    assert report.dropped == {"missing_event_id": 1, "missing_customer_id": 3, "invalid_timestamp": 1,
                              "invalid_amount": 3, "duplicate_event": 1}
    assert report.input_rows == 12 and report.kept_rows == 3
    assert report.kept_rows + report.dropped_rows == report.input_rows
    assert report.zero_amount_rows == 1 and report.return_rows == 1
    assert report.first_bad["invalid_amount"] == "row 5: 'abc'"
    assert report.first_bad["duplicate_event"] == "row 7: 'e1'"
    assert report.first_bad["missing_customer_id"] == "row 2"
    assert out.loc[out["event_id"] == "e1", "amount"].item() == 10.0
    assert out.loc[out["event_id"] == "e1", "customer_id"].item() == "C1"


def test_rows_timed_more_than_the_skew_after_now_are_dropped_as_in_the_future():
    now = pd.Timestamp("2026-11-29T12:00:00Z")
    raw = frame([
        ("past", "C1", T0, "1"),
        ("edge", "C1", "2026-11-30T12:00:00Z", "1"),    # exactly a day ahead: kept
        ("ahead", "C2", "2026-11-30T12:00:01Z", "1"),   # a second more: dropped
        ("typo", "C3", "2096-11-29T12:00:00Z", "2"),    # a year typo: dropped
    ])  # fmt: skip
    out, report = clean_transactions(raw, "t.csv", now=now)
    assert list(out["event_id"]) == ["past", "edge"]
    assert report.dropped.get("timestamp_in_future", 0) == 2
    assert report.first_bad["timestamp_in_future"] == "row 3: '2026-11-30T12:00:01Z'"
    assert "dropped: timestamp in the future" in report.render()
    # 0 turns the check off
    out, report = clean_transactions(raw, "t.csv", now=now, limits=EventLimits(max_future_skew_ms=0))
    assert len(out) == 4 and report.dropped.get("timestamp_in_future", 0) == 0
    with pytest.raises(DataFileError, match=r"no row is usable .*timestamp in the future: 2"):
        clean_transactions(raw.iloc[2:], "t.csv", now=now)


@settings(max_examples=50, deadline=None)
@given(offsets_s=st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=20), skew_s=st.integers(1, 10**7))
def test_the_future_check_keeps_exactly_the_rows_within_the_skew(offsets_s, skew_s):
    now = pd.Timestamp("2026-11-29T00:00:00Z")
    stamps = [(now + pd.Timedelta(seconds=o)).isoformat() for o in offsets_s]
    raw = frame([(f"e{i}", "C", ts, "1") for i, ts in enumerate(stamps)])
    within = [f"e{i}" for i, o in enumerate(offsets_s) if o <= skew_s]
    if not within:
        with pytest.raises(DataFileError):
            clean_transactions(raw, "t", now=now, limits=EventLimits(max_future_skew_ms=skew_s * 1000))
        return
    out, report = clean_transactions(raw, "t", now=now, limits=EventLimits(max_future_skew_ms=skew_s * 1000))
    assert sorted(out["event_id"]) == sorted(within)
    assert report.dropped.get("timestamp_in_future", 0) == len(offsets_s) - len(within)


def test_output_types_and_order():
    raw = frame([("b", "C", "2025-01-02T00:00:00Z", "1"), ("a", "C", "2025-01-02T01:00:00+01:00", "2"),
                 ("c", "C", 1735689600000, 3.25)], quantity=["1", "x", "2"], note=["n1", "n2", "n3"])
    out, _ = clean_transactions(raw, "t")
    assert list(out["event_id"]) == ["c", "a", "b"]  # same instant for a and b: event_id breaks the tie
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["amount"].dtype == np.float64
    assert out["timestamp"].iloc[0] == pd.Timestamp("2025-01-01", tz="UTC")
    assert list(out.columns) == ["event_id", "customer_id", "timestamp", "amount", "quantity", "note"]
    assert math.isnan(out.loc[1, "quantity"])  # a bad optional value is blanked, the row kept
    assert list(out.index) == [0, 1, 2]


def test_parse_timestamps_variants():
    s = pd.Series(["2025-03-01T10:15:00+00:00", "2025-03-01T12:15:00+02:00", "2025-03-01 10:15:00",
                   "1740824100000", " 1740824100000 ", "0001-01-01T00:00:00+00:00", "2150-01-01", "", None,
                   "12/1/2010 8:26", "20250301"], dtype=object)
    got = parse_timestamps(s)
    expected = pd.Timestamp("2025-03-01T10:15:00Z")
    assert (got.iloc[:5] == expected).all()
    assert got.iloc[5:6].isna().all()  # before what pandas holds
    assert got.iloc[6] == pd.Timestamp("2150-01-01", tz="UTC")  # read as it is: the contract judges the range
    assert got.iloc[7:10].isna().all()  # blank, missing, not ISO
    assert got.iloc[10] == pd.Timestamp(20250301, unit="ms", tz="UTC")  # digits mean epoch ms
    typed = parse_timestamps(pd.Series(pd.to_datetime(["2025-03-01 10:15"])))
    assert typed.iloc[0] == expected
    ints = parse_timestamps(pd.Series([1740824100000, np.nan]))
    assert ints.iloc[0] == expected and pd.isna(ints.iloc[1])


def test_parse_amounts_variants():
    got = parse_amounts(pd.Series(["1.5", " -2 ", "1e3", "nan", "inf", "-inf", "12,50", "", None, "0"]))
    assert got.iloc[:3].tolist() == [1.5, -2.0, 1000.0]
    assert got.iloc[3:9].isna().all()
    assert got.iloc[9] == 0.0
    assert parse_amounts(pd.Series([1.0, np.inf, np.nan])).isna().tolist() == [False, True, True]


def test_whole_column_unparseable_names_column_value_and_row():
    raw = frame([("e1", "C", T0, "abc"), ("e2", "C", T0, "x")])
    with pytest.raises(DataFileError, match=r"file t.csv: column 'amount': no value could be parsed as a "
                                            r"number \(first bad value 'abc' at row 1\)"):
        clean_transactions(raw, "t.csv")
    raw = frame([("e1", "C", "", "1"), ("e2", "C", "soon", "1")], row_index=False)
    with pytest.raises(DataFileError, match=r"column 'timestamp': .*first bad value '' at row 1"):
        clean_transactions(raw, "t.csv")
    with pytest.raises(DataFileError, match=r"column 'customer_id': every value is empty"):
        clean_transactions(frame([("e1", None, T0, "1")]), "t.csv")


def test_row_numbers_come_from_the_row_index():
    raw = frame([("e1", "C", T0, "1"), ("e2", "C", T0, "bad")])
    raw.index = pd.Index([10, 42], name="row")
    _, report = clean_transactions(raw, "t")
    assert report.first_bad["invalid_amount"] == "row 42: 'bad'"


def test_missing_column_empty_input_and_nothing_left():
    with pytest.raises(DataFileError, match=r"file t: required column 'amount' is missing"):
        clean_transactions(frame([("e", "C", T0, "1")]).drop(columns="amount"), "t")
    with pytest.raises(DataFileError, match="no data rows"):
        clean_transactions(frame([]), "t")
    with pytest.raises(DataFileError, match=r"no row is usable .*missing customer id: 1, unparseable "
                                            r"timestamp: 1"):
        clean_transactions(frame([("e1", None, T0, "1"), ("e2", "C", "x", "1")]), "t")


def test_report_render_and_dict():
    _, report = clean_transactions(frame([("e1", "C", T0, "1"), ("e1", "C", T0, "1"), ("e2", "D", T0, "-1")]),
                                   "data.csv")
    text = report.render()
    assert "cleaning data.csv" in text
    assert "dropped: duplicate event" in text and "[duplicate_event]" in text
    assert "first at row 2: 'e1'" in text
    assert "2025-03-01T10:15:00+00:00 .. 2025-03-01T10:15:00+00:00" in text
    d = report.to_dict()
    assert d["dropped_rows"] == 1 and d["kept_rows"] == 2 and d["return_rows"] == 1 and d["customers"] == 2
    assert isinstance(report, CleaningReport)


junk = st.one_of(st.none(), st.text(max_size=12), st.integers(-10**16, 10**16).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(str), st.sampled_from([T0, "1", "C1", "e1"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(junk, junk, junk, junk), max_size=25), st.randoms(use_true_random=False))
def test_cleaning_never_fails_on_junk_and_counts_add_up(rows, rnd):
    good = ("good", "C1", T0, "1.00")
    rows = list(rows)
    rows.insert(rnd.randint(0, len(rows)), good)
    out, report = clean_transactions(frame(rows), "junk.csv")
    assert report.kept_rows == len(out) >= 1
    assert report.kept_rows + report.dropped_rows == report.input_rows == len(rows)
    assert out["event_id"].is_unique
    assert np.isfinite(out["amount"]).all()
    assert out["timestamp"].notna().all()
    assert report.render()
