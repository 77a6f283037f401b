"""fit_btyd: the weighted fit on distinct (x, t_x, T) equals lifetimes on every row; fits are remembered."""

from __future__ import annotations

import numpy as np
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

from segstream.models.features import FEATURE_NAMES
from segstream.trainer import btyd_fit
from segstream.trainer.btyd_fit import _bgnbd_rows, fit_btyd

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _rows(frequency, recency, T, monetary) -> np.ndarray:
    """Feature rows whose BTYD inputs are the given summary (lifetimes' definitions, in days)."""
    x = np.zeros((len(frequency), len(FEATURE_NAMES)))
    x[:, COL["frequency"]] = frequency + 1.0
    x[:, COL["mean_days_between"]] = np.where(frequency > 0, recency / np.maximum(frequency, 1.0), 0.0)
    x[:, COL["recency_days"]] = T - recency
    x[:, COL["aov"]] = monetary
    return x


@pytest.fixture(scope="module")
def cdnow_days():
    """CDNOW's summary in days (weeks x 7), replicated 3x: many customers share a history."""
    data = load_cdnow_summary_data_with_monetary_value()
    columns = ("frequency", "recency", "T", "monetary_value")
    f, rec, T, m = (np.tile(data[c].to_numpy(dtype=np.float64), 3) for c in columns)
    return f, 7.0 * rec, 7.0 * T, m


def test_weighted_distinct_rows_fit_equals_lifetimes_on_all_rows(cdnow_days, monkeypatch):
    f, rec, T, m = cdnow_days
    fr, rr, tr, weights = _bgnbd_rows(f, rec, T)
    assert weights is not None and len(fr) < len(f) / 2 and weights.sum() == len(f)
    monkeypatch.setattr(btyd_fit, "_FITTED", type(btyd_fit._FITTED)())
    scorer = fit_btyd(_rows(f, rec, T, m), 90.0)
    reference = BetaGeoFitter().fit(f, rec, T).params_
    np.testing.assert_allclose(list(scorer.bgnbd), reference[["r", "alpha", "a", "b"]].to_numpy(), rtol=1e-9)
    repeat = (f > 0) & (m > 0)
    spend = GammaGammaFitter().fit(f[repeat], m[repeat], q_constraint=True).params_
    np.testing.assert_allclose(list(scorer.gamma_gamma), spend[["p", "q", "v"]].to_numpy(), rtol=1e-12)


def test_distinct_rows_are_used_only_when_they_halve_the_fit():
    rng = np.random.default_rng(0)
    T = rng.uniform(1.0, 500.0, 1000)
    f = rng.integers(0, 5, 1000).astype(float)
    rec = np.where(f > 0, T * 0.5, 0.0)
    assert _bgnbd_rows(f, rec, T)[3] is None  # continuous times: nothing to merge
    out = _bgnbd_rows(f, rec, T)
    assert all(a is b for a, b in zip(out[:3], (f, rec, T), strict=True))


def test_same_rows_fit_once(cdnow_days, monkeypatch):
    f, rec, T, m = cdnow_days
    x = _rows(f, rec, T, m)
    monkeypatch.setattr(btyd_fit, "_FITTED", type(btyd_fit._FITTED)())
    calls = []
    real = btyd_fit.first_converging
    monkeypatch.setattr(btyd_fit, "first_converging", lambda fit: calls.append(1) or real(fit))
    first = fit_btyd(x, 90.0)
    again = fit_btyd(x.copy(), 30.0)
    assert len(calls) == 2  # BG/NBD and Gamma-Gamma, once
    assert again.bgnbd == first.bgnbd and again.gamma_gamma == first.gamma_gamma and again.horizon_days == 30.0
    other = x.copy()
    other[0, COL["aov"]] += 1.0
    fit_btyd(other, 90.0)
    assert len(calls) == 4
