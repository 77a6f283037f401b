"""Every page on a bundle alone (no Redis, no Kafka), through Streamlit's AppTest."""

from __future__ import annotations

import pytest

from segstream.viz.bundle_tables import BundleTables
from tests.unit.dashboard.fixtures import PAGES, dashboard_bundle, fresh_streamlit_caches, make_app, open_page, texts

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
__all__ = ["dashboard_bundle", "fresh_streamlit_caches"]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_page_renders_on_a_bundle_alone(page, dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle), page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    shown = texts(at)
    assert BundleTables.open(dashboard_bundle).manifest.version in shown
    if page == "live":
        assert "Monitoring (events/s, lag, dead letters, drift): not available" in shown
        assert "Live segment mix: not available" in shown
        assert "Segment changes: not available" in shown
    if page == "forecasts":
        assert "Worker forecast refresh: not available" in shown
    if page in ("live", "segments", "forecasts", "whatif"):
        assert at.get("plotly_chart"), f"{page} drew no chart"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_bad_bundle_path_gets_a_clear_message_on_every_page(page, tmp_path, monkeypatch):
    at = open_page(make_app(monkeypatch, tmp_path / "nowhere"), page)
    assert not at.exception
    assert any("Cannot open the model bundle" in e.value and "nowhere" in e.value for e in at.error)
    assert any("No usable bundle" in e.value for e in at.sidebar.error)


def test_a_directory_that_is_not_a_bundle_is_refused_with_its_reason(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{not json")
    at = open_page(make_app(monkeypatch, tmp_path), "segments")
    assert not at.exception
    assert any(str(tmp_path) in e.value and "not a usable bundle" in e.value for e in at.error)


def test_the_sidebar_field_switches_bundles(dashboard_bundle, tmp_path, monkeypatch):
    at = open_page(make_app(monkeypatch, tmp_path / "missing"), "segments")
    assert at.error
    at.sidebar.text_input(key="bundle_path").input(str(dashboard_bundle)).run()
    assert not at.error and not at.exception
    assert [t.value for t in at.title] == ["Segments"]


def test_customer_lookup_shows_segment_spend_and_features(dashboard_bundle, monkeypatch):
    customers = BundleTables.open(dashboard_bundle).customers
    row = customers.iloc[7]
    at = open_page(make_app(monkeypatch, dashboard_bundle), "customer")
    at.text_input(key="customer_id").input(row["customer_id"]).run()
    assert not at.exception and not at.error
    shown = texts(at)
    assert row["segment_name"] in shown
    assert "training snapshot" in shown and "live state is switched off" in shown
    spend = next(m for m in at.metric if m.label == "90-day spend (predicted)")
    assert spend.value == f"{row['predicted_spend_90d']:,.2f}"
    features = at.dataframe[0].value
    assert list(features["feature"])[:3] == ["recency_days", "frequency", "monetary"]
    assert features.set_index("feature").loc["frequency", "value"] == pytest.approx(row["frequency"])
    assert "Change history: not available" in shown


def test_an_unknown_customer_id_gets_a_clear_message(dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle), "customer")
    at.text_input(key="customer_id").input("no-such-customer").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["No customer with id `no-such-customer` in the bundle (400 customers)."]


def test_whatif_scores_edited_features_with_both_models_and_explains_the_tree(dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle), "whatif")
    assert not at.exception and not at.error
    names = BundleTables.open(dashboard_bundle).segment_names
    before = texts(at)
    assert "K-Means segment" in before and "Decision-tree segment" in before
    assert "→ leaf:" in before
    # Push recency to its maximum: a long-silent customer; the page re-scores without failing.
    slider = next(s for s in at.slider if s.label.startswith("recency_days"))
    slider.set_value(slider.max).run()
    assert not at.exception and not at.error
    after = texts(at)
    assert "recency_days** is" in after or "→ leaf:" in after
    assert any(name in after for name in names.values())


def test_whatif_from_an_unknown_customer_says_so(dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle), "whatif")
    at.selectbox(key="whatif_base").set_value("customer").run()
    at.text_input(key="whatif_customer").input("ghost").run()
    assert not at.exception
    assert any("No customer with id `ghost`" in e.value for e in at.error)


def test_forecasts_switch_series_and_horizon(dashboard_bundle, monkeypatch):
    at = open_page(make_app(monkeypatch, dashboard_bundle), "forecasts")
    series = at.selectbox[0]
    segment_series = next(o for o in series.options if o.startswith("Segment"))
    series.select(segment_series).run()
    at.slider[0].set_value(7).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert {"model", "MAE", "RMSE", "coverage", "skill vs naive"} <= set(table.columns)
    assert "Seasonal naive" in set(table["model"])
