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


DAY = 86_400_000


def test_a_dwell_holds_a_new_segment_back_until_it_has_lasted():
    record = SegmentRecord()
    record, changed = step(record, 0, 1, now_ms=0, dwell_ms=3 * DAY)
    assert changed and record.segment == 0  # the first evaluation always emits
    record, changed = step(record, 1, 1, now_ms=10 * DAY, dwell_ms=3 * DAY)
    assert not changed and record.pending == 1 and record.pending_since_ms == 10 * DAY
    record, changed = step(record, 1, 1, now_ms=12 * DAY, dwell_ms=3 * DAY)
    assert not changed and record.pending_since_ms == 10 * DAY  # still counting from when it was first seen
    record, changed = step(record, 1, 1, now_ms=13 * DAY, dwell_ms=3 * DAY)
    assert changed and record.segment == 1 and record.pending is None


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=40), st.integers(0, 4))
def test_with_a_dwell_a_change_is_emitted_only_once_the_segment_lasted(steps, dwell_days):
    """Emitted at an evaluation exactly when it is the first one, or the model has named the new segment at
    every evaluation since it first differed and that was at least the dwell ago (hold = 1)."""
    record, now, current, pending = SegmentRecord(), 0, None, None  # pending: (segment, first seen at)
    for predicted, gap in steps:
        now += gap * DAY
        record, changed = step(record, predicted, 1, now_ms=now, dwell_ms=dwell_days * DAY)
        if current is None:
            expected = True
        elif predicted == current:
            expected, pending = False, None
        else:
            if pending is None or pending[0] != predicted:
                pending = (predicted, now)
            expected = now - pending[1] >= dwell_days * DAY
        assert changed == expected, (steps, dwell_days)
        if changed:
            current, pending = predicted, None
        assert record.segment == current


def test_the_sweep_looks_again_when_a_dwell_ends():
    from pathlib import Path

    from segstream.models.customer_state import CustomerState
    from segstream.streams.bundle_watch import ActiveModel
    from segstream.streams.evaluate import evaluate
    from segstream.streams.state.base import CustomerView
    from tests.unit.streams.fakes import RecencyScorer, serving

    as_of = 1_800_000_000_000
    state = CustomerState()
    state.add("e1", as_of - 80 * DAY, 1000)  # recency 80 days > 60: "At risk" (1), stored as 0
    view = CustomerView("c", state.aggregates(as_of), SegmentRecord(0, None, 0, "v0", 0))
    model = ActiveModel("v1", Path("/nonexistent"), serving(RecencyScorer(60.0)))
    [ev] = evaluate({"c": view}, model, as_of, hold=1, cause="purchase", recheck_after_ms=90 * DAY,
                    dwell_ms=5 * DAY)  # fmt: skip
    assert ev.change is None and ev.record.pending == 1 and ev.next_check_ms == as_of + 5 * DAY
