"""The numpy/scipy BTYD scorer equals lifetimes' BG/NBD and Gamma-Gamma closed forms, and is robust.

Reference: lifetimes' own fitters on its CDNOW summary data (time unit: weeks there; the formulas do not
care about the unit).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
from lifetimes.utils import summary_data_from_transaction_data

from segstream.models.btyd import (
    BGNBDParams,
    BTYDScorer,
    GammaGammaParams,
    _numerator,
    _numerator_by_quadrature,
    btyd_columns,
    btyd_inputs,
    expected_average_value,
    expected_purchases,
    probability_alive,
)
from segstream.models.errors import FeatureSpecError
from segstream.models.features import FEATURE_NAMES, batch_features

HORIZONS = (1, 30, 90, 365)
N_FEATURES = len(FEATURE_NAMES)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


@pytest.fixture(scope="module")
def cdnow() -> dict:
    data = load_cdnow_summary_data_with_monetary_value()
    bgf = BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"])
    returning = data[data["frequency"] > 0]  # as lifetimes' docs do: Gamma-Gamma models repeat purchases
    ggf = GammaGammaFitter().fit(returning["frequency"], returning["monetary_value"])
    return {
        "data": data,
        "bgf": bgf,
        "ggf": ggf,
        "bgnbd": BGNBDParams(**bgf.params_),
        "gg": GammaGammaParams(**ggf.params_),
        "f": data["frequency"].to_numpy(dtype=np.float64),
        "rec": data["recency"].to_numpy(dtype=np.float64),
        "T": data["T"].to_numpy(dtype=np.float64),
        "m": data["monetary_value"].to_numpy(dtype=np.float64),
    }


def feature_rows(frequency, recency, T, monetary) -> np.ndarray:
    """Full feature rows whose BTYD inputs are the given lifetimes summary (other columns: junk)."""
    frequency = np.asarray(frequency, dtype=np.float64)
    n = frequency + 1.0
    x = np.random.default_rng(0).lognormal(size=(len(n), N_FEATURES))
    x[:, COL["frequency"]] = n
    x[:, COL["mean_days_between"]] = np.where(frequency > 0, recency / np.maximum(frequency, 1.0), x[:, 0])
    x[:, COL["recency_days"]] = T - recency
    x[:, COL["aov"]] = monetary
    return x


# --- the closed forms equal lifetimes ---------------------------------------------------------------------


@pytest.mark.parametrize("t", HORIZONS)
def test_expected_purchases_equals_lifetimes(cdnow, t):
    expected = cdnow["bgf"].conditional_expected_number_of_purchases_up_to_time(
        t, cdnow["data"]["frequency"], cdnow["data"]["recency"], cdnow["data"]["T"]
    )
    got = expected_purchases(cdnow["bgnbd"], t, cdnow["f"], cdnow["rec"], cdnow["T"])
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=1e-8, atol=0)


def test_probability_alive_equals_lifetimes(cdnow):
    expected = cdnow["bgf"].conditional_probability_alive(cdnow["f"], cdnow["rec"], cdnow["T"])
    got = probability_alive(cdnow["bgnbd"], cdnow["f"], cdnow["rec"], cdnow["T"])
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=0)
    assert (got[cdnow["f"] == 0] == 1.0).all()


def test_expected_average_value_equals_lifetimes(cdnow):
    expected = cdnow["ggf"].conditional_expected_average_profit(
        cdnow["data"]["frequency"], cdnow["data"]["monetary_value"]
    )
    got = expected_average_value(cdnow["gg"], cdnow["f"], cdnow["m"])
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=1e-8, atol=0)
    p, q, v = cdnow["gg"]
    np.testing.assert_allclose(got[cdnow["f"] == 0], p * v / (q - 1), rtol=1e-12)


@pytest.mark.parametrize("t", HORIZONS)
def test_scorer_on_feature_rows_equals_lifetimes(cdnow, t):
    x = feature_rows(cdnow["f"], cdnow["rec"], cdnow["T"], cdnow["m"])
    scorer = BTYDScorer(cdnow["bgnbd"], cdnow["gg"], horizon_days=t)
    d = cdnow["data"]
    purchases = np.asarray(
        cdnow["bgf"].conditional_expected_number_of_purchases_up_to_time(t, d["frequency"], d["recency"], d["T"])
    )
    value = np.asarray(cdnow["ggf"].conditional_expected_average_profit(d["frequency"], d["monetary_value"]))
    np.testing.assert_allclose(scorer.expected_purchases(x), purchases, rtol=1e-8, atol=0)
    np.testing.assert_allclose(scorer.expected_value(x), value, rtol=1e-8, atol=0)
    np.testing.assert_allclose(scorer.predict(x), purchases * value, rtol=1e-8, atol=0)
    np.testing.assert_allclose(
        scorer.probability_alive(x), cdnow["bgf"].conditional_probability_alive(d["frequency"], d["recency"], d["T"])
    )


def test_quadrature_fallback_equals_closed_form(cdnow):
    """The fallback is an independent evaluation of the same numerator (P(alive) is shared)."""
    r, alpha, a, b = cdnow["bgnbd"]
    rows = np.random.default_rng(3).choice(len(cdnow["f"]), size=200, replace=False)
    for t in HORIZONS:
        ones = np.full(len(rows), float(t))
        closed = _numerator(r, alpha, a, b, ones, cdnow["f"][rows], cdnow["T"][rows])
        quadrature = [_numerator_by_quadrature(r, alpha, a, b, float(t), cdnow["f"][i], cdnow["T"][i]) for i in rows]
        np.testing.assert_allclose(quadrature, closed, rtol=1e-9, atol=0)


# hyp2f1 returns NaN (or a negative value) at these points; references computed with mpmath at 40-60 digits.
DEGENERATE = [
    # (r, alpha, a, b), t, x, T, numerator
    ((2.0, 1.0, 3.0, 0.5), 106.0, 317.0, 3.0, 159.53811886191167315),  # c - a - b integer, z near 1
    ((1.0, 10.0, 2.0, 1.0), 120.0, 1175.0, 2.0, 1069.9172275182293315),  # same
    ((0.3, 2.0, 0.4, 0.5), 150.0, 0.0, 85.0, 0.37886398943023409873),  # c = a + b - 1 < 0
    ((0.5, 4.0, 1.0, 2.0), 30.0, 3.0, 40.0, 1.9314776729058098562),  # a == 1 (limit of (a+b+x-1)/(a-1)*...)
]


@pytest.mark.parametrize(("params", "t", "x", "T", "reference"), DEGENERATE)
def test_degenerate_hypergeometric_cases_fall_back_to_quadrature(params, t, x, T, reference):
    got = _numerator(*params, np.array([t]), np.array([x]), np.array([T]))
    np.testing.assert_allclose(got, [reference], rtol=1e-9)
    full = expected_purchases(BGNBDParams(*params), t, x, 0.8 * T if x else 0.0, T)
    assert np.isfinite(full).all() and (full >= 0).all()


# x == 0 with a + b < 1: c = a + b - 1 < 0 and 2F1 is negative or close to 1 for every one-time buyer, so the
# logs fail; the product is formed directly. References: N = s u 3F2(1, s + 1, a; 2, c + 1; -u) (the closed
# form without the 1 / (a - 1) and valid for every a, b > 0), mpmath at 50 digits.
SIGNED = [
    # (r, alpha, a, b), t, x, T, numerator  (2F1 at the closed form's arguments)
    ((1.0, 12.0, 0.5, 0.45), 90.0, 0.0, 10.0, 1.7515955581985935346),  # 2F1 = -84.1
    ((1.0, 12.0, 0.5, 0.45), 90.0, 0.0, 300.0, 0.25249036785586119109),  # 2F1 = -1.96
    ((0.25, 3.0, 0.9, 0.05), 365.0, 0.0, 1.0, 0.80037213172909435556),  # 2F1 = -1.86
    ((3.0, 1.0, 0.1, 0.2), 30.0, 0.0, 0.0, 41.398621162393317756),  # 2F1 = -1.56e+06
    ((0.8, 50.0, 0.99, 0.005), 1.0, 0.0, 700.0, 0.0010653946777431580295),  # 2F1 = 0.999
    ((2.0, 0.5, 0.3, 0.6), 3000.0, 0.0, 20.0, 52.009160200202787903),  # 2F1 = -7.88e+06
    ((0.3, 2.0, 0.4, 0.5), 150.0, 0.0, 85.0, 0.37886398943023409873),  # from DEGENERATE
]


def test_negative_hypergeometric_is_exact_without_quadrature(monkeypatch):
    def no_quadrature(*args):
        raise AssertionError(f"quadrature called for {args}")

    monkeypatch.setattr("segstream.models.btyd._numerator_by_quadrature", no_quadrature)
    params = [case[0] for case in SIGNED]
    for i, (prm, t, x, big_t, reference) in enumerate(SIGNED):
        got = _numerator(*prm, np.array([t]), np.array([x]), np.array([big_t]))
        np.testing.assert_allclose(got, [reference], rtol=1e-11, atol=0, err_msg=f"case {i}")
    # Vectorised: 400,000 one-time buyers of such a fit are as fast as any others (no per-row loop).
    rng = np.random.default_rng(5)
    big_t = rng.uniform(0.0, 700.0, 400_000)
    got = _numerator(*params[0], np.full_like(big_t, 90.0), np.zeros_like(big_t), big_t)
    assert np.isfinite(got).all() and (got > 0).all()
    np.testing.assert_allclose(got[big_t.argsort()[::-1]], np.sort(got), rtol=0, atol=0)  # falls with T


def test_direct_product_agrees_with_quadrature_where_hypergeometric_is_negative():
    """An independent check over random fits with a + b < 1 (the quadrature is good to ~1e-8 there)."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        a = rng.uniform(0.05, 0.95)
        b = rng.uniform(0.01, 1.0 - a - 1e-3)
        r, alpha = rng.uniform(0.1, 4.0), 10 ** rng.uniform(-0.5, 2.5)
        big_t, t = rng.uniform(0.0, 700.0), float(rng.choice(HORIZONS))
        closed = _numerator(r, alpha, a, b, np.array([t]), np.array([0.0]), np.array([big_t]))[0]
        assert closed == pytest.approx(_numerator_by_quadrature(r, alpha, a, b, t, 0.0, big_t), rel=1e-7)


@pytest.mark.parametrize("bgnbd", [BGNBDParams(0.24, 30.9, 0.79, 2.43), BGNBDParams(1.0, 12.0, 0.5, 0.45)])
def test_btyd_columns_equal_the_scorer_methods(cdnow, bgnbd):
    x = feature_rows(cdnow["f"], cdnow["rec"], cdnow["T"], cdnow["m"])
    x[:50, COL["frequency"]] = 0.0  # customers with returns only
    scorer = BTYDScorer(bgnbd, cdnow["gg"], 90.0)
    expected = np.column_stack(
        [scorer.predict(x), scorer.expected_purchases(x), scorer.probability_alive(x), scorer.expected_value(x)]
    )
    np.testing.assert_array_equal(btyd_columns(scorer, x), expected)


# --- properties -------------------------------------------------------------------------------------------

_params = st.builds(
    BGNBDParams,
    r=st.floats(0.05, 5.0),
    alpha=st.floats(0.5, 500.0),
    a=st.floats(0.05, 5.0),
    b=st.floats(0.05, 20.0),
)
_history = st.tuples(
    st.integers(0, 2_000),  # purchases n
    st.floats(0.0, 3_000.0),  # recency_days (as-of minus last purchase)
    st.floats(0.0, 500.0),  # mean_days_between
    st.floats(0.0, 10_000.0),  # aov
)


def _rows(histories: list[tuple[int, float, float, float]]) -> np.ndarray:
    x = np.zeros((len(histories), N_FEATURES))
    for i, (n, recency_days, gap, aov) in enumerate(histories):
        x[i, COL["frequency"]] = n
        x[i, COL["recency_days"]] = recency_days
        x[i, COL["mean_days_between"]] = gap
        x[i, COL["aov"]] = aov if n > 0 else 0.0
    return x


@settings(max_examples=300, deadline=None)
@given(
    params=_params,
    histories=st.lists(_history, min_size=1, max_size=8),
    horizons=st.lists(st.floats(0.0, 5_000.0), min_size=2, max_size=6),
)
def test_expected_purchases_finite_non_negative_non_decreasing_and_row_independent(params, histories, horizons):
    x = _rows(histories)
    frequency, recency, T, _ = btyd_inputs(x)
    assert (T >= recency).all() and (recency >= 0).all()
    curves = np.array([expected_purchases(params, t, frequency, recency, T) for t in sorted(horizons)])
    assert np.isfinite(curves).all()
    assert (curves >= 0).all()
    assert (np.diff(curves, axis=0) >= -1e-9 * curves[:-1]).all()

    scorer = BTYDScorer(params, GammaGammaParams(6.25, 3.74, 15.4), horizon_days=max(horizons))
    batch = scorer.predict(x)
    assert np.isfinite(batch).all() and (batch >= 0).all()
    alone = np.concatenate([scorer.predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(alone, batch)
    alone_purchases = np.concatenate([scorer.expected_purchases(x[i]) for i in range(len(x))])
    np.testing.assert_array_equal(alone_purchases, scorer.expected_purchases(x))


# --- inputs from events -----------------------------------------------------------------------------------

T0 = pd.Timestamp("2024-03-01 09:30", tz="UTC")


def _events(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """(customer, day offset, amount) -> a clean events frame."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": [T0 + pd.Timedelta(days=r[1]) for r in rows],
            "amount": [r[2] for r in rows],
        }
    )


def _lifetimes_summary(events: pd.DataFrame) -> pd.DataFrame:
    # lifetimes turns timestamps into periods, which drops (and warns about) a time zone: hand it naive UTC.
    naive = events.assign(timestamp=events["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None))
    return summary_data_from_transaction_data(naive, "customer_id", "timestamp", "amount", freq="D").sort_index()


def test_btyd_inputs_match_lifetimes_summary_when_purchases_fall_on_distinct_days():
    events = _events(
        [
            ("A", 0, 10.0),
            ("B", 0, 20.0),
            ("B", 10, 30.0),
            ("B", 45, 40.0),
            ("C", 20, 5.0),
            ("C", 21, 7.5),
            ("D", 3, 1.0),
            ("D", 7, 2.0),
            ("D", 30, 3.0),
            ("D", 61, 4.0),
            ("D", 92, 5.0),
            ("E", 5, 99.99),
            ("E", 100, 0.01),  # the latest event: the as-of time of both summaries
        ]
    )
    features = batch_features(events)
    frequency, recency, T, monetary = btyd_inputs(features.to_numpy())
    summary = _lifetimes_summary(events)
    assert list(summary.index) == list(features.index)
    np.testing.assert_array_equal(frequency, summary["frequency"].to_numpy())
    np.testing.assert_allclose(recency, summary["recency"].to_numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(T, summary["T"].to_numpy(), rtol=1e-12, atol=1e-12)
    # Monetary differs on purpose: ours is the mean of all purchases (aov), lifetimes' the repeat ones only.
    np.testing.assert_allclose(monetary, events.groupby("customer_id")["amount"].mean().to_numpy(), rtol=1e-12)


def test_two_purchases_on_one_day_are_two_purchases_to_us_and_one_day_to_lifetimes():
    events = _events([("A", 0, 10.0), ("A", 0.25, 15.0), ("A", 10, 20.0), ("B", 30, 1.0)])
    frequency, recency, T, _ = btyd_inputs(batch_features(events).to_numpy())
    summary = _lifetimes_summary(events)
    assert frequency[0] == 2.0  # three purchases
    assert summary.loc["A", "frequency"] == 1.0  # two days with purchases
    np.testing.assert_allclose([recency[0], T[0]], [summary.loc["A", "recency"], summary.loc["A", "T"]])


def test_customer_without_purchase_scores_zero():
    events = _events([("A", 0, 10.0), ("A", 5, 12.0), ("R", 2, -30.0), ("R", 40, 10.0), ("R", 41, -10.0)])
    events = events[events["customer_id"].ne("R") | events["amount"].lt(0)]  # R: returns only
    x = batch_features(events).to_numpy()
    frequency, recency, T, monetary = btyd_inputs(x)
    recency_days = x[:, COL["recency_days"]]
    np.testing.assert_array_equal([frequency[1], recency[1], monetary[1]], [0.0, 0.0, 0.0])
    assert T[1] == recency_days[1] > 0
    scorer = BTYDScorer(BGNBDParams(0.24, 30.9, 0.79, 2.43), GammaGammaParams(6.25, 3.74, 15.4), 365.0)
    assert scorer.predict(x)[1] == 0.0 and scorer.expected_purchases(x)[1] == 0.0
    assert scorer.predict(x)[0] > 0


def test_single_purchase_has_no_repeat_and_t_equals_recency_days():
    x = np.zeros((1, N_FEATURES))
    x[0, COL["frequency"]] = 1
    x[0, COL["recency_days"]] = 12.5
    x[0, COL["mean_days_between"]] = 12.5  # features.py puts the tenure here when n < 2; it must be ignored
    x[0, COL["aov"]] = 42.0
    assert [float(v[0]) for v in btyd_inputs(x)] == [0.0, 0.0, 12.5, 42.0]


# --- the scorer object ------------------------------------------------------------------------------------


def test_scorer_pickles_and_round_trips_through_json(cdnow):
    scorer = BTYDScorer(cdnow["bgnbd"], cdnow["gg"], 90.0)
    x = feature_rows(cdnow["f"], cdnow["rec"], cdnow["T"], cdnow["m"])
    again = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_array_equal(again.predict(x), scorer.predict(x))
    blob = json.dumps(scorer.params_dict())
    rebuilt = BTYDScorer.from_params_dict(json.loads(blob))
    np.testing.assert_array_equal(rebuilt.predict(x), scorer.predict(x))
    assert scorer.params_dict()["feature_names"] == list(scorer.feature_names)
    assert set(scorer.feature_names) <= set(FEATURE_NAMES)


def test_scorer_rejects_bad_matrices():
    scorer = BTYDScorer(BGNBDParams(0.24, 30.9, 0.79, 2.43), GammaGammaParams(6.25, 3.74, 15.4), 365.0)
    with pytest.raises(FeatureSpecError):
        scorer.predict(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(FeatureSpecError):
        scorer.predict(np.zeros((2, 3, N_FEATURES)))
    bad = np.zeros((1, N_FEATURES))
    bad[0, COL["aov"]] = np.nan
    with pytest.raises(FeatureSpecError, match="aov"):
        scorer.predict(bad)
    bad = np.zeros((1, N_FEATURES))
    bad[0, COL["frequency"]] = 1.5
    with pytest.raises(FeatureSpecError, match="whole number"):
        scorer.predict(bad)
    bad = np.zeros((1, N_FEATURES))
    bad[0, COL["recency_days"]] = -1.0
    with pytest.raises(FeatureSpecError, match="recency_days"):
        scorer.expected_purchases(bad)


@pytest.mark.parametrize(
    ("bgnbd", "gg", "horizon"),
    [
        (BGNBDParams(0.0, 1.0, 1.0, 1.0), GammaGammaParams(1.0, 2.0, 1.0), 1.0),
        (BGNBDParams(1.0, float("nan"), 1.0, 1.0), GammaGammaParams(1.0, 2.0, 1.0), 1.0),
        (BGNBDParams(1.0, 1.0, 0.5, 1.0), GammaGammaParams(1.0, 0.9, 1.0), 1.0),
        (BGNBDParams(1.0, 1.0, 0.5, 1.0), GammaGammaParams(1.0, 2.0, 1.0), -1.0),
    ],
)
def test_scorer_rejects_bad_parameters(bgnbd, gg, horizon):
    with pytest.raises(ValueError):
        BTYDScorer(bgnbd, gg, horizon)
