"""Hysteresis and the shared scoring step."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segstream.streams.evaluate import step
from segstream.streams.state.base import SegmentRecord


def run_sequence(predictions, hold):
    record = SegmentRecord()
    emitted = []
    for p in predictions:
        record, changed = step(record, p, hold)
        if changed:
            emitted.append(record.segment)
    return record, emitted


def test_first_evaluation_always_emits():
    assert run_sequence([2], hold=5)[1] == [2]


def test_hold_one_switches_at_once():
    assert run_sequence([0, 1, 0, 0, 2], hold=1)[1] == [0, 1, 0, 2]


def test_hold_three_needs_three_agreeing_evaluations():
    record, emitted = run_sequence([0, 1, 1, 0, 1, 1, 1], hold=3)
    assert emitted == [0, 1] and record.segment == 1
    record, emitted = run_sequence([0, 1, 2, 1, 2], hold=2)
    assert emitted == [0] and record.pending == 2 and record.pending_count == 1
    record, _ = run_sequence([0, 1, 1, 0], hold=3)
    assert record.segment == 0 and record.pending is None and record.pending_count == 0


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(1, 5))
def test_hysteresis_matches_its_definition(predictions, hold):
    """A change is emitted at evaluation i exactly when it is the first evaluation, or the ``hold`` latest
    predictions all name one segment other than the current one and all came after the last change."""
    record = SegmentRecord()
    current, last_change = None, -1
    for i, p in enumerate(predictions):
        record, changed = step(record, p, hold)
        window = predictions[i - hold + 1 : i + 1] if i - hold + 1 >= 0 else []
        expected = current is None or (
            p != current and i - hold + 1 > last_change and len(window) == hold and set(window) == {p}
        )
        assert changed == expected, (predictions[: i + 1], hold)
        if changed:
            current, last_change = p, i
        assert record.segment == current
