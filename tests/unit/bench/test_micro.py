"""Micro-benchmarks: the equality check on a real (small) bundle, JSON rates, the timing loop."""

from __future__ import annotations

import numpy as np
import pytest

from segstream.bench import micro
from segstream.bench.workload import make_workload, train_bench_bundle
from segstream.models.features import FEATURE_NAMES


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return train_bench_bundle(tmp_path_factory.mktemp("models"), customers=400, seed=3)


def test_scoring_labels_equal_sklearn_and_rates_are_positive(bundle, monkeypatch):
    monkeypatch.setattr(micro, "SCORING_BATCHES", (1, 100))
    out = micro.scoring(bundle, rows=3000, budget_s=0.02)
    assert out["labels_equal"] is True
    assert out["segment_mismatches"] == 0 and out["tree_mismatches"] == 0
    assert [b["batch"] for b in out["batches"]] == [1, 100]
    assert all(b["vectorised_rows_per_s"] > 0 and b["sklearn_rows_per_s"] > 0 for b in out["batches"])


def test_feature_rows_are_distinct_and_finite():
    x = micro.feature_rows(1000, seed=1)
    assert x.shape == (1000, len(FEATURE_NAMES))
    assert np.isfinite(x).all()
    assert len(np.unique(x, axis=0)) > 900


def test_json_codec_rates():
    out = micro.json_codec(make_workload(300, 50, seed=4, run_id="j").values, budget_s=0.02)
    assert set(out) == {
        "json_loads_per_s", "orjson_loads_per_s", "parse_event_per_s", "scored_encode_per_s", "bytes_per_message"
    }  # fmt: skip
    # Rates only: which codec is faster is the benchmark's to report, not a test's to assert.
    assert all(v > 0 for v in out.values())


def test_rate_counts_items_per_second():
    assert micro._rate(lambda i: 10, 0.01) > 0
