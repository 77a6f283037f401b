"""The batch side of the two-worker parity check equals the core's per-customer fold."""

from __future__ import annotations

from segstream.bench.parity import batch_view
from segstream.bench.workload import make_workload
from segstream.models.customer_state import fold_events
from segstream.models.features import to_cents


def test_batch_view_equals_the_fold_as_of_the_last_event():
    w = make_workload(1500, 200, seed=5, run_id="p")
    as_of = max(r["timestamp"] for r in w.records)
    folded = fold_events((r["event_id"], r["customer_id"], r["timestamp"], to_cents(r["amount"])) for r in w.records)
    view = batch_view(w)
    assert set(view) == set(folded)
    assert all(view[cid] == state.aggregates(as_of) for cid, state in folded.items())
