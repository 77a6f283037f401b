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
"""

from __future__ import annotations

import contextlib
import io
import warnings

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
    bgnbd = first_converging(
        lambda pen: BetaGeoFitter(penalizer_coef=pen).fit(frequency[buyers], recency[buyers], big_t[buyers])
    )
    spend = first_converging(
        lambda pen: GammaGammaFitter(penalizer_coef=pen).fit(frequency[repeat], monetary[repeat], q_constraint=True)
    )
    try:
        return BTYDScorer(BGNBDParams(**bgnbd.params_), GammaGammaParams(**spend.params_), horizon_days)
    except ValueError as exc:
        raise BTYDFitError(f"BG/NBD + Gamma-Gamma fitted unusable parameters: {exc}") from exc


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
