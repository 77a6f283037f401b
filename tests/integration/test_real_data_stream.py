"""Real public logs through the stream: CDNOW (K-Means) and Superstore (the RFM map), exact parity.

The trainer accepts these files; the worker must accept every event of them too, fold them into the same
features, and give every customer the segment the bundle gives in batch, whichever segmenter trained it.
"""

from __future__ import annotations

import json

import pytest

from segstream.models.bundle import promote
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import load_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from tests.integration.parity_support import replay_and_compare

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("dataset", "segmenter"), [("cdnow-sample", "kmeans"), ("superstore", "rfm")])
def test_a_real_log_replays_with_exact_parity(embedded_stack, redis_client, tmp_path, public_data, dataset, segmenter):
    data = public_data(dataset)
    events, report = clean_transactions(load_transactions(data), str(data))
    assert report.dropped_rows == 0
    root = tmp_path / "models"
    trained = train_bundle(events, root / dataset, options=TrainOptions(segmenter=segmenter, seed=1))
    promote(trained.bundle_dir, root)
    manifest = json.loads((trained.bundle_dir / "manifest.json").read_text())
    assert manifest["info"]["segmenter"] == segmenter
    result = replay_and_compare(embedded_stack, redis_client, tmp_path, data, events, root)
    assert len(set(result["segments"].tolist())) >= 4  # real segments, not "the better quarter and the rest"
