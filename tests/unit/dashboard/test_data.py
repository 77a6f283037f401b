"""Bundle access: path choice, clear refusals, and the models behind the What-if page."""

from __future__ import annotations

import numpy as np
import pytest

from segstream.dashboard.data import BUNDLE_ENV, default_bundle_path, feature_row, load_models, open_tables
from segstream.dashboard.errors import DashboardError
from segstream.models.features import FEATURE_NAMES
from segstream.settings import ModelSettings, Settings
from tests.unit.dashboard.fixtures import dashboard_bundle

__all__ = ["dashboard_bundle"]


def test_default_bundle_is_the_cli_choice_else_the_current_pointer(tmp_path):
    settings = Settings.load(models=ModelSettings(root=tmp_path / "models"))
    assert default_bundle_path(settings, {BUNDLE_ENV: "/b"}) == "/b"
    assert default_bundle_path(settings, {}) == str(tmp_path / "models" / "current")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: "", "no bundle given"),
        (lambda p: p / "absent", "does not exist"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file, not a bundle directory"),
        (lambda p: p, "is not a usable bundle"),
    ],
)
def test_open_tables_refuses_with_the_path_and_reason(tmp_path, make, message):
    with pytest.raises(DashboardError, match=message):
        open_tables(make(tmp_path))


def test_a_tampered_bundle_is_refused_before_anything_is_read(dashboard_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dashboard_bundle, copy)
    target = next(copy.glob("*.csv"))
    target.write_text(target.read_text() + "\n1,2,3\n")
    with pytest.raises(DashboardError, match=r"not a usable bundle"):
        open_tables(copy)


def test_models_score_like_the_bundle_table(dashboard_bundle):
    tables = open_tables(dashboard_bundle)
    models = load_models(dashboard_bundle, Settings.load())
    customers = tables.customers.sample(50, random_state=1)
    for _, row in customers.iterrows():
        x = feature_row({f: row[f] for f in FEATURE_NAMES})
        assert models.kmeans_segment(x) == row["segment"]
        assert models.pca(x) == pytest.approx((row["pca_1"], row["pca_2"]))
        assert models.predicted_spend(x) == pytest.approx(row["predicted_spend_90d"])
        path = models.tree_path(x)
        assert path and all(step.direction in ("<=", ">") for step in path)
        assert models.tree_segment(x) in models.names
    assert models.names == tables.segment_names


def test_feature_row_is_in_feature_spec_order():
    row = feature_row({"monetary": 5.0, "recency_days": 2.0})
    assert row.shape == (1, len(FEATURE_NAMES))
    assert row[0, FEATURE_NAMES.index("monetary")] == 5.0
    assert row[0, FEATURE_NAMES.index("recency_days")] == 2.0
    assert np.count_nonzero(row) == 2


def test_models_of_a_missing_bundle_fail_with_a_dashboard_error(tmp_path):
    with pytest.raises(DashboardError, match="cannot load the models"):
        load_models(tmp_path, Settings.load())
