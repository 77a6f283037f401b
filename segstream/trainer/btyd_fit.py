"""Fitting the buy-till-you-die baseline (BG/NBD + Gamma-Gamma) with the maintained ``lifetimes`` library.

The standard model of marketing science for "how much will this customer spend next quarter" (Fader,
Hardie & Lee 2005; Fader & Hardie 2013) is the bar our purchase models must clear, so it is fitted with the
library practitioners use rather than written by hand. Only the fitted parameters leave this module: the
closed forms that score them live in :mod:`segstream.models.btyd` (tested equal to lifetimes), so the
worker and ``score`` never import lifetimes.

Inputs are derived from our feature rows (:func:`segstream.models.btyd.btyd_inputs`), in days: repeat
purchases, time from first to last purchase, and time from first purchase to the as-of time. The spend
model is fitted on customers with at least one repeat purchase and positive mean value, as lifetimes
documents. When the optimiser does not converge, a small L2 penalty is tried (lifetimes' own advice).

Speed (400,000 customers): BG/NBD's likelihood depends on a customer only through ``(x, t_x, T)``, so
customers with the same triple are fitted once with lifetimes' ``weights`` (their count) when that at least
halves the rows -- the same weighted-mean objective; on day-aligned logs such as CDNOW the rows shrink ~8x
and the parameters agree with the unweighted fit to ~1e-13. Gamma-Gamma is fitted on the rows as they
are. Above FIT_SAMPLE customers each model is fitted on a seeded random sample of that many. The fitted
parameters of the last few inputs are remembered, so the two BTYD candidates of one
training, fitted on the same rows, run lifetimes once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections import OrderedDict

import numpy as np

from segstream.models.btyd import BGNBDParams, BTYDScorer, GammaGammaParams, btyd_inputs
from segstream.trainer.errors import TrainerError

_PENALTIES = (0.0, 0.001, 0.01, 0.1)


class BTYDFitError(TrainerError):
    """BG/NBD or Gamma-Gamma did not converge on these customers, with any of the penalties tried."""


def fit_btyd(x: np.ndarray, horizon_days: float) -> BTYDScorer:
    """Fit BG/NBD and Gamma-Gamma on full feature rows and return the scorer for ``horizon_days``.

    Raises:
        BTYDFitError: Too few repeat buyers, or no penalty made the fits converge.
    """
    from lifetimes import BetaGeoFitter, GammaGammaFitter  # heavy (autograd); only the trainer needs it

    frequency, recency, big_t, monetary = btyd_inputs(x)
    buyers = big_t > 0
    repeat = buyers & (frequency > 0) & (monetary > 0)
    if repeat.sum() < 10:
        raise BTYDFitError(f"BG/NBD + Gamma-Gamma: only {int(repeat.sum())} repeat buyers, need 10")
    key = _fingerprint(frequency, recency, big_t, monetary)
    params = _FITTED.get(key)
    if params is None:
        buyers, repeat = _sample(np.flatnonzero(buyers)), _sample(np.flatnonzero(repeat))
        f, rec, t, weights = _bgnbd_rows(frequency[buyers], recency[buyers], big_t[buyers])
        bgnbd = first_converging(lambda pen: BetaGeoFitter(penalizer_coef=pen).fit(f, rec, t, weights=weights))
        spend = first_converging(
            lambda pen: GammaGammaFitter(penalizer_coef=pen).fit(frequency[repeat], monetary[repeat], q_constraint=True)
        )
        params = (BGNBDParams(**bgnbd.params_), GammaGammaParams(**spend.params_))
    _remember(key, params)
    try:
        return BTYDScorer(*params, horizon_days)
    except ValueError as exc:
        raise BTYDFitError(f"BG/NBD + Gamma-Gamma fitted unusable parameters: {exc}") from exc


# Above this many customers each model is fitted on a seeded random sample of this size. Four (BG/NBD) and
# three (Gamma-Gamma) parameters are pinned down long before that, while lifetimes' autograd likelihood
# costs ~0.1 s an evaluation at 360k customers with sub-day times (no duplicate triples to merge): the
# three fits of one training took 82 s of a 2-minute budget. Every real log we test on is smaller, so
# their fits are unchanged.
FIT_SAMPLE = 50_000


def _sample(rows: np.ndarray) -> np.ndarray:
    """``rows`` (indices), or a seeded sorted sample of FIT_SAMPLE of them."""
    if len(rows) <= FIT_SAMPLE:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, size=FIT_SAMPLE, replace=False))


# Fitted (BG/NBD, Gamma-Gamma) parameters by a digest of the inputs, most recent last.
_FITTED: OrderedDict[str, tuple[BGNBDParams, GammaGammaParams]] = OrderedDict()
_FITTED_SIZE = 4


def _fingerprint(*columns: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for col in columns:
        col = np.ascontiguousarray(col, dtype=np.float64)
        digest.update(str(col.shape).encode())
        digest.update(col.tobytes())
    return digest.hexdigest()


def _remember(key: str, params: tuple[BGNBDParams, GammaGammaParams]) -> None:
    _FITTED[key] = params
    _FITTED.move_to_end(key)
    while len(_FITTED) > _FITTED_SIZE:
        _FITTED.popitem(last=False)


def _bgnbd_rows(
    frequency: np.ndarray, recency: np.ndarray, big_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """BG/NBD's fit rows: the distinct ``(x, t_x, T)`` with their counts as weights when that at least halves
    the rows, else the rows themselves (weights None)."""
    n = len(frequency)
    if n < 2 or len(np.unique(big_t)) > n // 2:  # at least as many distinct triples as distinct T
        return frequency, recency, big_t, None
    triples, counts = np.unique(np.column_stack([frequency, recency, big_t]), axis=0, return_counts=True)
    if len(triples) > n // 2:
        return frequency, recency, big_t, None
    return triples[:, 0], triples[:, 1], triples[:, 2], counts


def first_converging(fit):  # type: ignore[no-untyped-def]
    """``fit(penalty)`` with the first penalty that converges, lifetimes' warnings and prints silenced."""
    from lifetimes.utils import ConvergenceError

    last: Exception | None = None
    for penalty in _PENALTIES:
        try:
            # lifetimes' optimiser warns on every step it clips, and prints its result when it fails.
            with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return fit(penalty)
        except (ConvergenceError, ValueError, FloatingPointError) as exc:
            last = exc
    raise BTYDFitError(f"BG/NBD + Gamma-Gamma did not converge (penalties {list(_PENALTIES)}): {last}")
