"""Tables and figures of the pages: content, units and one colour per segment."""

from __future__ import annotations

import pandas as pd

from segstream.dashboard import charts, views
from segstream.dashboard.screens.forecasts import forecast_rows
from segstream.viz.figures import segment_color

NAMES = {0: "Champions", 1: "At risk"}


def test_changes_table_is_newest_first_with_names_and_readable_times():
    records = [
        {"customer_id": "a", "previous_segment": None, "segment": 0, "cause": "purchase", "event_time_ms": 1000},
        {"customer_id": "b", "previous_segment": 0, "segment": 1, "cause": "inactivity",
         "event_time_ms": 1767225600000, "model_version": "v1"},
    ]  # fmt: skip
    table = views.changes_table(records, NAMES)
    assert list(table["customer"]) == ["b", "a"]
    assert table.iloc[0]["from"] == "0 · Champions" and table.iloc[0]["to"] == "1 · At risk"
    assert table.iloc[0]["event time"] == "2026-01-01 00:00 UTC"
    assert table.iloc[1]["from"] == "— (new)"


def test_features_table_has_units():
    table = views.features_table({"recency_days": 3.0, "spend_90d": 12.5, "purchases_30d": 2.0, "aov": 4.0})
    units = dict(zip(table["feature"], table["unit"], strict=True))
    assert units == {"recency_days": "days", "aov": "money", "spend_90d": "net spend in last 90 days",
                     "purchases_30d": "purchases in last 30 days"}  # fmt: skip


def test_segment_badge_escapes_the_name_and_uses_the_segment_colour():
    html = views.segment_badge("Segment", 1, {1: "<b>x</b>"})
    assert "&lt;b&gt;x&lt;/b&gt;" in html and segment_color(1) in html


def test_forecast_rows_accepts_a_stored_refresh_and_topic_rows():
    stored = {"generated_at": "2026-01-02T00:00:00Z", "model_version": "v",
              "rows": [{"series": "total", "date": "2026-01-03", "yhat": 1.0, "lower": 0.5, "upper": 2.0,
                        "model": "prophet"}]}  # fmt: skip
    frame = forecast_rows(stored)
    assert frame is not None and frame.iloc[0]["generated_at"] == "2026-01-02T00:00:00Z"
    assert frame.iloc[0]["date"] == pd.Timestamp("2026-01-03")
    assert frame.attrs["meta"]["model_version"] == "v"
    topic = forecast_rows([{"date": "2026-01-03T00:00:00+00:00", "yhat": 3.0}])
    assert topic is not None and topic.iloc[0]["series"] == "total" and topic.iloc[0]["lower"] == 3.0
    assert forecast_rows(None) is None and forecast_rows([{"nothing": 1}]) is None


def test_live_figures_colour_segments_consistently():
    mix = pd.DataFrame({"time": pd.to_datetime(["2026-01-01"] * 2), "segment": [0, 1], "share": [0.25, 0.75]})
    fig = charts.mix_over_time_figure(mix, NAMES)
    assert [t.line.color for t in fig.data] == [segment_color(0), segment_color(1)]
    assert fig.layout.yaxis.title.text == "share of customers (%)"
    comparison = charts.mix_comparison_figure({0: 1, 1: 3}, {0: 2, 1: 2}, NAMES)
    assert list(comparison.data[1].y) == [25.0, 75.0] and list(comparison.data[0].y) == [50.0, 50.0]
    sales = pd.DataFrame({"date": pd.to_datetime(["2026-01-01"] * 3), "series": ["total", "segment:0", "segment:1"],
                          "sales": [3.0, 1.0, 2.0]})  # fmt: skip
    bars = charts.streamed_sales_figure(sales, NAMES)
    assert [t.marker.color for t in bars.data] == [segment_color(0), segment_color(1)]


def test_backtest_error_figure_marks_the_seasonal_naive_baseline():
    metrics = {"prophet": {"mae": 5.0}, "seasonal_naive": {"mae": 8.0}, "by_segment": {"1": {"prophet": {"mae": 2.0}}},
               "best_model": "prophet"}  # fmt: skip
    fig = charts.backtest_error_figure(metrics)
    assert list(fig.data[0].x) == ["Prophet", "Seasonal naive"] and list(fig.data[0].y) == [5.0, 8.0]
    assert fig.layout.shapes[0].y0 == 8.0
    assert list(charts.backtest_error_figure(metrics, "segment:1").data[0].y) == [2.0]


def test_customer_percentile_figure_places_values_among_customers():
    customers = pd.DataFrame({"recency_days": [1.0, 2.0, 3.0, 4.0], "segment": [0, 0, 1, 1]})
    fig = charts.customer_percentile_figure({"recency_days": 4.0}, customers, 1, NAMES, features=["recency_days"])
    assert list(fig.data[0].x) == [87.5]
    assert fig.data[0].marker.color == segment_color(1)
    assert list(fig.data[1].x) == [75.0]  # the segment median, 3.5, is above 3 of the 4 customers
