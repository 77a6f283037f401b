"""The backtest: honest split, eta^2 as defined, every section filled, and the CLI writes what it says."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.cli.main import cli
from segstream.models.features import FEATURE_NAMES, batch_features
from segstream.trainer.backtest import (
    LIFETIMES_BASELINE,
    USED_BY_SCORE,
    BacktestError,
    eta_squared,
    monetary_groups,
    run_backtest,
    split_at,
)
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.loading import write_table
from segstream.trainer.pipeline import TrainOptions
from segstream.trainer.purchase import CANDIDATES, DECISION_TREE, calibration_holdout, fit_candidate


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    raw = generate_transactions(600, 500, seed=8, dirty_fraction=0.0)
    return clean_transactions(raw, "generated")[0]


@pytest.fixture(scope="module")
def result(events) -> dict:
    return run_backtest(events, "2025-10-01", 60, options=TrainOptions(seed=2), source="generated")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-(10**6), 10**6).map(lambda c: c / 100)), min_size=2,
                max_size=200))  # fmt: skip
def test_eta_squared_is_the_share_of_variance_between_groups(rows) -> None:
    groups = np.array([g for g, _ in rows])
    values = np.array([v for _, v in rows])
    eta = eta_squared(groups, values)
    assert -1e-9 <= eta <= 1 + 1e-9
    assert eta_squared(np.zeros(len(values)), values) == pytest.approx(0.0, abs=1e-9)
    if np.ptp(values) > 0:
        assert eta_squared(np.arange(len(values)), values) == pytest.approx(1.0)


def test_eta_squared_by_hand() -> None:
    # Group means 1 and 3, grand mean 2: between = 4 * 1, total = 4 * 1 + 4 * 0.25... computed directly.
    values = np.array([0.5, 1.5, 2.5, 3.5])
    groups = np.array([0, 0, 1, 1])
    between = 2 * (1 - 2) ** 2 + 2 * (3 - 2) ** 2
    total = ((values - 2) ** 2).sum()
    assert eta_squared(groups, values) == pytest.approx(between / total)


def test_monetary_groups_are_equal_sized_and_ordered() -> None:
    groups = monetary_groups(np.array([5.0, 1.0, 1.0, 9.0, 3.0, 7.0]), 3)
    assert np.bincount(groups).tolist() == [2, 2, 2]
    assert groups[3] == 2 and groups[1] == groups[2] == 0


def test_split_is_strictly_before_and_within_the_horizon(events) -> None:
    split = split_at(events, "2025-10-01", 60)
    cutoff = pd.Timestamp("2025-10-01", tz="UTC")
    assert pd.to_datetime(split.before["timestamp"], utc=True).max() < cutoff
    after = pd.to_datetime(split.horizon["timestamp"], utc=True)
    assert after.min() >= cutoff and after.max() < cutoff + pd.Timedelta(days=60)
    with pytest.raises(BacktestError, match="no event before"):
        split_at(events, "1990-01-01", 60)
    with pytest.raises(BacktestError, match="before the horizon does"):
        split_at(events, "2025-12-15", 60)


def test_every_section_is_filled(result) -> None:
    assert json.loads(json.dumps(result)) == result
    assert set(result["groupings"]) == {"segments", "rfm_map", "monetary_quantiles"}
    seg = result["groupings"]["segments"]
    assert 4 <= result["bundle"]["k"] <= 8 and seg["groups"] == result["groupings"]["monetary_quantiles"]["groups"]
    assert sum(s["customers"] for s in seg["segments"]) == result["data"]["customers"]
    assert all(0 <= s["repeat_rate"] <= 1 for s in seg["segments"])
    assert all(s["description"] for s in seg["segments"])
    spend = result["spend_models"]
    assert {USED_BY_SCORE, "baseline", LIFETIMES_BASELINE, "bgnbd_gamma_gamma"} <= set(spend)
    assert set(CANDIDATES) - set(spend.get("skipped", {})) <= set(spend)  # every spend model, side by side
    assert spend[USED_BY_SCORE] == spend[result["bundle"]["purchase_model"]]  # score uses the refit candidate
    forecasts = result["forecasts"]
    assert {"prophet", "random_forest", "seasonal_naive"} <= set(forecasts)
    assert len(forecasts["series"]["actual"]) == len(forecasts["series"]["dates"]) == 60
    assert "flattering_names_below_population_repeat" in result["checks"]


def test_the_decision_tree_is_scored_beside_the_others(events, result) -> None:
    split = split_at(events, "2025-10-01", 60)
    fit_x, fit_y, _ = calibration_holdout(split.before, 60)
    tree = fit_candidate(DECISION_TREE, fit_x[list(FEATURE_NAMES)].to_numpy(), fit_y.to_numpy(), 60, 2)
    now = batch_features(split.before, as_of=split.as_of)
    actual = split.horizon.groupby(split.horizon["customer_id"].astype(str))["amount"].sum()
    err = tree.predict(now[list(FEATURE_NAMES)].to_numpy()) - actual.reindex(now.index, fill_value=0.0).to_numpy()
    scores = result["spend_models"][DECISION_TREE]
    assert scores["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-12)
    assert scores["mae"] == pytest.approx(float(np.mean(np.abs(err))), rel=1e-12)


def test_the_horizon_outcomes_are_the_real_ones(events, result) -> None:
    split = split_at(events, "2025-10-01", 60)
    known = split.before["customer_id"].astype(str).unique()
    bought = split.horizon.loc[split.horizon["amount"] >= 0, "customer_id"].astype(str)
    expected = np.isin(known, bought.unique()).mean()
    assert result["population"]["repeat_rate"] == pytest.approx(expected)
    spend = split.horizon.groupby("customer_id")["amount"].sum().reindex(known, fill_value=0.0)
    assert result["population"]["mean_spend"] == pytest.approx(spend.mean())


def test_cli_prints_tables_and_writes_json_and_html(tmp_path) -> None:
    data = tmp_path / "history.csv"
    write_table(generate_transactions(300, 420, seed=3, dirty_fraction=0.0), data)
    out_json, out_html = tmp_path / "bt.json", tmp_path / "bt.html"
    result = CliRunner().invoke(cli, ["backtest", "--data", str(data), "--cutoff", "2025-10-01", "--horizon", "60",
                                      "--json", str(out_json), "--html", str(out_html)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eta^2" in result.output and "BG/NBD + Gamma-Gamma (lifetimes)" in result.output
    assert DECISION_TREE in result.output
    assert DECISION_TREE in json.loads(out_json.read_text())["spend_models"]
    assert json.loads(out_json.read_text())["data"]["cutoff"] == "2025-10-01"
    page = out_html.read_text()
    assert "segstream backtest" in page and "plotly" in page and "RFM map" in page
    assert f"<td>{DECISION_TREE}</td>" in page


def test_cli_refuses_a_cutoff_without_a_horizon_after_it(tmp_path) -> None:
    data = tmp_path / "history.csv"
    write_table(generate_transactions(50, 100, seed=3, dirty_fraction=0.0), data)
    result = CliRunner().invoke(cli, ["backtest", "--data", str(data), "--cutoff", "2025-12-20"])
    assert result.exit_code == 2 and "before the horizon does" in result.output
    assert "Traceback" not in result.output
