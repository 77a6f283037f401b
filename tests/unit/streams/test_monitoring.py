"""PSI drift, the live segment mix and the monitoring record."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from segstream.streams.monitoring import SegmentMix, WorkerStats, monitoring_record, psi


def test_psi_is_zero_for_identical_mixes_and_known_for_a_shift():
    assert psi({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}) == 0.0
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert math.isclose(psi({0: 0.5, 1: 0.5}, {0: 0.8, 1: 0.2}), expected)
    # counts are renormalised like shares
    assert math.isclose(psi({0: 5, 1: 5}, {0: 80, 1: 20}), expected)


def test_psi_stays_finite_when_a_segment_is_missing_and_is_zero_on_empty_input():
    value = psi({0: 0.5, 1: 0.5}, {0: 1.0})
    assert math.isfinite(value) and value > 1.0
    assert psi({}, {0: 1.0}) == 0.0 and psi({0: 1.0}, {}) == 0.0


@given(
    st.dictionaries(st.integers(0, 6), st.floats(0.01, 100)), st.dictionaries(st.integers(0, 6), st.floats(0.01, 100))
)
def test_psi_is_non_negative_and_symmetric(a, b):
    assert psi(a, b) >= -1e-12
    assert math.isclose(psi(a, b), psi(b, a), rel_tol=1e-9, abs_tol=1e-12)


def test_segment_mix_counts_each_customer_once_in_its_latest_segment():
    mix = SegmentMix()
    for cid, seg in [("a", 0), ("b", 0), ("a", 1), ("c", 1), ("a", 1)]:
        mix.observe(cid, seg)
    assert dict(mix.counts) == {0: 1, 1: 2}
    assert mix.shares() == {0: 1 / 3, 1: 2 / 3}


def test_monitoring_record_fields():
    stats = WorkerStats(processed=100, dead_letters=2, duplicates=3)
    stats.mix.observe("a", 0)
    record = monitoring_record(stats, model_version="v1", training_mix={0: 0.5, 1: 0.5}, lag={"0": 4, "1": 1},
                               watermark_ms=123, events_per_s=55.5, worker_id="w")  # fmt: skip
    assert record["consumer_lag"] == 5 and record["processed"] == 100 and record["duplicates_skipped"] == 3
    assert record["segment_mix"] == {"live": {"0": 1.0}, "training": {"0": 0.5, "1": 0.5}}
    assert record["drift_psi"] > 0 and record["events_per_s"] == 55.5 and record["model_version"] == "v1"
