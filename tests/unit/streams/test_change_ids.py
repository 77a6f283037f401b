"""Campaign-ready changes: deterministic ids, the tree's reason and agreement, and how noisy changes are."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sklearn.tree import DecisionTreeClassifier

from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import PathStep, TreeScorer, explain_path
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.evaluate import evaluate
from segstream.streams.monitoring import FlapCounter, WorkerStats, flap_rate, monitoring_record
from segstream.streams.outputs import change_payload
from segstream.streams.state.base import CustomerView, SegmentChange, SegmentRecord
from tests.unit.streams.fakes import RecencyScorer, serving

RECENCY = FEATURE_NAMES.index("recency_days")

changes = st.builds(
    SegmentChange,
    customer_id=st.text(min_size=1, max_size=8),
    previous_segment=st.one_of(st.none(), st.integers(0, 9)),
    segment=st.integers(0, 9),
    model_version=st.sampled_from(["v1", "v2"]),
    event_time_ms=st.integers(0, 2**41),
    cause=st.sampled_from(["purchase", "inactivity"]),
    event_id=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    basis=st.text(max_size=8),
)


@given(changes)
def test_change_id_depends_only_on_what_makes_the_change(change) -> None:
    again = dataclasses.replace(change, features={"recency_days": 1.0}, reason="x", tree_agrees=True)
    assert again.change_id == change.change_id and len(change.change_id) == 32
    others = (("segment", change.segment + 1), ("model_version", "v3"), ("customer_id", change.customer_id + "z"))
    for field, value in others:
        assert dataclasses.replace(change, **{field: value}).change_id != change.change_id


def test_inactivity_changes_are_told_apart_by_their_as_of_time() -> None:
    a = SegmentChange("c1", 0, 1, "v1", 1_000, "inactivity", None)
    assert a.change_id != dataclasses.replace(a, event_time_ms=2_000).change_id
    assert a.change_id == SegmentChange("c1", 0, 1, "v1", 1_000, "inactivity", None).change_id


def test_the_payload_and_the_history_carry_the_id_and_the_reason() -> None:
    change = SegmentChange("c1", 0, 1, "v1", 1_000, "purchase", "e1", {"recency_days": 99.0},
                           reason="recency_days 99 > 60", tree_agrees=True, basis="e0")  # fmt: skip
    payload = json.loads(change_payload(change, {0: "Active", 1: "At risk"}))
    assert payload["change_id"] == change.change_id == change.history_entry()["change_id"]
    assert payload["reason"] == "recency_days 99 > 60" and payload["tree_agrees"] is True


def test_explain_path_reads_like_a_sentence() -> None:
    steps = [PathStep("recency_days", 120.0, ">", 140.0), PathStep("frequency", 3.0, "<=", 2.0)]
    assert explain_path(steps) == "recency_days 140 > 120 and frequency 2 <= 3"
    assert explain_path([]) == ""


def _views(recencies: dict[str, float], as_of: int) -> dict[str, CustomerView]:
    from segstream.models.customer_state import CustomerState
    from segstream.models.features import DAY_MS

    out = {}
    for cid, days in recencies.items():
        state = CustomerState()
        state.add(f"{cid}-1", as_of - int(days * DAY_MS), 1000)
        out[cid] = CustomerView(cid, state.aggregates(as_of), SegmentRecord(0, None, 0, "v0", 0))
    return out


def test_evaluate_explains_each_change_with_the_tree() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 200, size=(400, len(FEATURE_NAMES)))
    tree = DecisionTreeClassifier(criterion="entropy", max_depth=2, random_state=0)
    tree.fit(x, (x[:, RECENCY] > 100).astype(int))  # the tree's boundary (100) differs from the model's (60)
    explained = dataclasses.replace(serving(RecencyScorer(60.0)), tree=TreeScorer(tree, FEATURE_NAMES))
    model = ActiveModel("v1", Path("/nonexistent"), explained)
    as_of = 2_000_000_000_000
    out = evaluate(_views({"near": 80.0, "far": 150.0}, as_of), model, as_of, hold=1, cause="inactivity",
                   recheck_after_ms=1, bases={"near": "b1"})  # fmt: skip
    by = {e.customer_id: e.change for e in out}
    assert by["far"].tree_agrees is True and by["near"].tree_agrees is False
    assert by["far"].reason.startswith("recency_days 150 > ") and by["near"].basis == "b1"


def test_a_flap_is_a_return_within_the_window() -> None:
    day = 86_400_000
    counter = FlapCounter(window_days=7)
    assert not counter.observe("a", 0, 1, 0)
    assert counter.observe("a", 1, 0, 3 * day)  # back to 0 after 3 days
    assert not counter.observe("a", 0, 1, 20 * day)  # 0 -> 1 again: not a return to the segment just left
    assert not counter.observe("a", 1, 0, 40 * day)  # back, but after 20 days
    assert not counter.observe("b", None, 1, 0)
    assert counter.changes == 5 and counter.flaps == 1 and counter.rate == 0.2
    records = [{"customer_id": "a", "previous_segment": p, "segment": s, "event_time_ms": t * day}
               for p, s, t in ((0, 1, 0), (1, 0, 3), (0, 1, 20), (1, 0, 40))]  # fmt: skip
    assert flap_rate(reversed(records)) == (4, 0.25)


def test_monitoring_reports_noise() -> None:
    stats = WorkerStats()
    stats.processed = 2000
    stats.note_changes([SegmentChange("a", 0, 1, "v", 0, "purchase", "e", tree_agrees=False),
                        SegmentChange("a", 1, 0, "v", 1, "purchase", "f", tree_agrees=True)])  # fmt: skip
    record = monitoring_record(stats, model_version="v", training_mix={}, lag=None, watermark_ms=0,
                               events_per_s=0.0, worker_id="w")  # fmt: skip
    assert record["changes_per_1000_events"] == 1.0 and record["tree_disagreement_share"] == 0.5
    assert record["flap_rate"] == 0.5 and record["flap_window_days"] == 7.0
