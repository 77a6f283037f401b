"""Real public logs through the stream: CDNOW (K-Means) and Superstore (the RFM map), exact parity.

The trainer accepts these files; the worker must accept every event of them too, fold them into the same
features, and give every customer the segment the bundle gives in batch, whichever segmenter trained it.
"""

from __future__ import annotations

import json

import pytest

from segstream.models.bundle import promote
from segstream.models.state_keys import KeySpace
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import load_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from tests.integration.parity_support import replay_and_compare

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fold", ["redis", "worker"])  # SEGSTREAM_REDIS_FOLD: in Redis (Lua) or in the worker
@pytest.mark.parametrize(("dataset", "segmenter"), [("cdnow-sample", "kmeans"), ("superstore", "rfm")])
def test_a_real_log_replays_with_exact_parity(embedded_stack, redis_client, tmp_path, public_data, dataset, segmenter,
                                              fold):  # fmt: skip
    data = public_data(dataset)
    events, report = clean_transactions(load_transactions(data), str(data))
    assert report.dropped_rows == 0
    root = tmp_path / "models"
    trained = train_bundle(events, root / dataset, options=TrainOptions(segmenter=segmenter, seed=1))
    promote(trained.bundle_dir, root)
    manifest = json.loads((trained.bundle_dir / "manifest.json").read_text())
    assert manifest["info"]["segmenter"] == segmenter
    result = replay_and_compare(embedded_stack, redis_client, tmp_path, data, events, root,
                                worker_env={"SEGSTREAM_REDIS_FOLD": fold})
    # the fold that ran: only the Lua fold keeps its window-sum cache (wd, w1..w6) in the customer hash
    keys = KeySpace(result["env"].prefix)
    cached = [bool(redis_client.hexists(keys.customer(c), "wd")) for c in events["customer_id"].astype(str).unique()]
    assert set(cached) == {fold == "redis"}
    assert len(set(result["segments"].tolist())) >= 4  # real segments, not "the better quarter and the rest"
