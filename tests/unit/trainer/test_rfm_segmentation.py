"""The RFM map as a segmenter: fixed cell ids, edges applied unchanged, the same bundle and scoring path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segstream.models.bundle import load_bundle
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, batch_features
from segstream.models.rfm import RFM_CELLS, RFMScorer
from segstream.models.serving import SERVING
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from segstream.trainer.rfm_segmentation import crosstab, fit_rfm_segmentation, rfm_cells


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return clean_transactions(generate_transactions(500, 400, seed=6, dirty_fraction=0.0), "generated")[0]


def test_cells_are_the_map_and_names_are_its_cells(events) -> None:
    features = batch_features(events)
    model = fit_rfm_segmentation(features)
    assert isinstance(model.scorer, RFMScorer) and model.segmenter == "rfm" and model.kmeans is None
    assert model.names == dict(enumerate(RFM_CELLS))
    x = features[list(FEATURE_NAMES)].to_numpy()
    assert np.array_equal(model.labels.to_numpy(), model.scorer.predict_segment(x))
    assert sum(model.sizes.values()) == len(features) and model.k == len(model.sizes)
    assert set(model.descriptions) == set(range(len(RFM_CELLS)))
    assert model.scorer.project_pca(x).shape == (len(x), 2)


def test_edges_come_from_training_and_are_reused_unchanged(events) -> None:
    features = batch_features(events)
    scorer, cells = rfm_cells(features)
    later = batch_features(events, as_of=pd.Timestamp(events["timestamp"].max()) + pd.Timedelta(days=30))
    assert np.array_equal(scorer.predict_segment(later.to_numpy()), fit_rfm_segmentation(features).scorer
                          .predict_segment(later.to_numpy()))  # fmt: skip
    table = crosstab(pd.Series(cells, index=features.index), cells)
    assert all(set(row) == {RFM_CELLS[int(seg)]} for seg, row in table.items())


def test_an_rfm_bundle_serves_like_a_kmeans_one(events, tmp_path) -> None:
    result = train_bundle(events, tmp_path / "rfm", options=TrainOptions(segmenter="rfm"))
    serving = load_bundle(tmp_path / "rfm", expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING]).artifact(SERVING)
    features = batch_features(events)
    expected = rfm_cells(features)[1]
    assert np.array_equal(serving.predict_segments(features.to_numpy()), expected)
    assert serving.segmenter == "rfm" and serving.names[0] == "Champions"
    assert result.metrics["segmentation"]["segmenter"] == "rfm"
    assert result.metrics["segmentation"]["name_checks"]["checked"] is False
