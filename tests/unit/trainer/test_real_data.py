"""Real public logs, not our generator: the targets of the segments issue, measured by the backtest.

CDNOW's 1/10 sample (2,357 customers of a 1997 music retailer, the standard buy-till-you-die test bed) at
the literature's 39-week calibration cutoff, and the Superstore order log (793 customers, 2014-2017) at the
start of its last year. Both come from package registries through the ``public_data`` fixture. What we
lose is asserted as a bound and said in docs/models.md, not hidden.
"""

from __future__ import annotations

import pytest

from segstream.trainer.backtest import LIFETIMES_BASELINE, USED_BY_SCORE, run_backtest
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import load_transactions

CASES = {"cdnow-sample": "1997-10-01", "superstore": "2017-01-01"}


@pytest.fixture(scope="module", params=sorted(CASES))
def backtest(request, public_data) -> dict:
    path = public_data(request.param)
    events, report = clean_transactions(load_transactions(path), str(path))
    assert report.dropped_rows == 0
    return run_backtest(events, CASES[request.param], 90, source=request.param)


def test_k_is_in_the_business_range_with_no_sliver(backtest) -> None:
    assert 4 <= backtest["bundle"]["k"] <= 8
    segments = backtest["groupings"]["segments"]["segments"]
    assert min(s["share"] for s in segments) >= 0.02


def test_no_flattering_name_on_a_segment_that_does_not_come_back(backtest) -> None:
    assert backtest["checks"]["flattering_names_below_population_repeat"] == []


def test_segments_explain_more_future_spend_than_the_rfm_map_with_fewer_groups(backtest) -> None:
    groupings = backtest["groupings"]
    assert groupings["segments"]["eta2_spend"] >= groupings["rfm_map"]["eta2_spend"]
    assert groupings["segments"]["groups"] < groupings["rfm_map"]["groups"]


def test_the_spend_model_beats_naive_and_stays_within_2_percent_of_bgnbd(backtest) -> None:
    spend = backtest["spend_models"]
    used, naive, btyd = spend[USED_BY_SCORE], spend["baseline"], spend[LIFETIMES_BASELINE]
    assert used["rmse"] < naive["rmse"] and used["mae"] < naive["mae"]
    # Measured: MAE at or below lifetimes' on CDNOW, RMSE 0.5-1% above it on both (docs/models.md says why).
    assert used["rmse"] <= 1.02 * btyd["rmse"] and used["mae"] <= 1.02 * btyd["mae"]
