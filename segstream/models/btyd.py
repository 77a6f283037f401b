"""Buy-till-you-die scoring: BG/NBD purchases x Gamma-Gamma spend, one customer at a time, numpy + scipy only.

The trainer fits the two models with the ``lifetimes`` library (``BetaGeoFitter`` and ``GammaGammaFitter``,
time unit: days); this module holds the fitted parameters and evaluates the closed forms, so the streaming
worker can score a customer from its feature vector without importing lifetimes (or autograd, or pandas).

Models:

* **BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a customer
  buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; after each purchase they drop out with
  probability ``p ~ Beta(a, b)``.
* **Gamma-Gamma** (Fader, Hardie & Lee 2005b; Hardie's note 025): the mean value of a customer's purchases
  shrinks their observed mean towards the population mean ``p * v / (q - 1)``.

Inputs use lifetimes' definitions, which differ from our feature names (mind ``recency`` in particular):

* ``frequency`` -- the number of *repeat* purchases, ``x = n - 1``;
* ``recency`` -- the time from the first to the last purchase, ``t_x`` (our ``recency_days`` feature is
  the time from the last purchase to the as-of time, so it is ``T - t_x``);
* ``T`` -- the time from the first purchase to the as-of time.

:func:`btyd_inputs` derives them from a feature row. They are exact functions of the customer's purchase
timestamps and the as-of time (integer-millisecond differences divided by the length of a day), so the
trainer and the stream, which build the same features from the same events, feed the models the same
numbers. Unlike ``lifetimes.utils.summary_data_from_transaction_data(freq="D")`` we count purchases, not
days with a purchase, and measure times to the millisecond, not in whole days: with at most one purchase a
day and day-aligned timestamps the two agree exactly; two purchases on one day are one "transaction" to
lifetimes and two to us. The monetary input is ``aov``, the mean gross value of *all* purchases; lifetimes'
summary averages the *repeat* purchases only (the first one is left out).

Exactness: :func:`expected_purchases`, :func:`probability_alive` and :func:`expected_average_value` follow
lifetimes 0.11.3 (``conditional_expected_number_of_purchases_up_to_time``,
``conditional_probability_alive``, ``conditional_expected_average_profit``) formula by formula; the tests
check them against lifetimes at ``rtol=1e-8`` on every CDNOW customer. The only changes are more accurate
spellings of the same expressions (``log1p``/``expm1`` for ``log(1 - z)`` and ``1 - exp``; multiplying by
P(alive) through ``expit`` instead of dividing by ``1 + ratio ** (r + x)``, which cannot overflow) and a
fallback where lifetimes would return NaN: ``scipy.special.hyp2f1`` returns NaN in some degenerate cases
(e.g. ``c - a - b`` an integer with ``z`` near 1, or ``c <= 0``). Where only the logs fail (2F1 negative,
as for every one-time buyer of a fit with ``a + b < 1``) the product is formed directly, vectorised;
where hyp2f1 itself fails the numerator is computed from its
integral over the posterior drop-out probability instead (:func:`_numerator_by_quadrature`), so a valid
history always gets a finite, non-negative number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.integrate import quad
from scipy.special import betaln, expit, hyp2f1

from segstream.models.errors import FeatureSpecError
from segstream.models.features import FEATURE_NAMES
from segstream.models.scoring import _full_matrix, column_indices


class BGNBDParams(NamedTuple):
    """Fitted BG/NBD parameters (lifetimes ``BetaGeoFitter.params_``; ``alpha`` in days when fitted on days).

    ``BGNBDParams(**fitter.params_)`` builds one from a fitted lifetimes model.
    """

    r: float
    alpha: float
    a: float
    b: float


class GammaGammaParams(NamedTuple):
    """Fitted Gamma-Gamma parameters (lifetimes ``GammaGammaFitter.params_``)."""

    p: float
    q: float
    v: float


# The feature columns the BTYD scorer reads.
BTYD_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "aov", "mean_days_between")

# Relative slack before a closed-form numerator above its upper bound (r + x) * t / (alpha + T) counts as
# a failed hyp2f1 evaluation; well above the ~1e-10 accuracy of the closed form.
_BOUND_SLACK = 1e-8


def expected_purchases(params: BGNBDParams, t: Any, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Expected number of repeat purchases in ``(T, T + t]`` given the history (BG/NBD equation 10).

    Equals lifetimes ``BetaGeoFitter.conditional_expected_number_of_purchases_up_to_time(t, frequency,
    recency, T)``.

    Args:
        params: The fitted BG/NBD parameters.
        t: Length of the future period, in the unit the model was fitted in.
        frequency: Repeat purchases ``x`` (>= 0).
        recency: Time from the first to the last purchase ``t_x`` (0 when ``x == 0``).
        T: Time from the first purchase to the as-of time (``T >= t_x``).

    Returns:
        A float64 array with the broadcast shape of the inputs (at least 1-D).
    """
    r, alpha, a, b = (float(v) for v in params)
    t_, x, _, big_t = _broadcast(t, frequency, recency, T)
    return _numerator(r, alpha, a, b, t_, x, big_t) * probability_alive(params, frequency, recency, T)


def probability_alive(params: BGNBDParams, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Probability that the customer has not dropped out by ``T`` (Hardie's note 021); 1 when ``x == 0``.

    Equals lifetimes ``BetaGeoFitter.conditional_probability_alive(frequency, recency, T)``.
    """
    r, alpha, a, b = (float(v) for v in params)
    x, t_x, big_t = _broadcast(frequency, recency, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_div = (r + x) * np.log((alpha + big_t) / (alpha + t_x)) + np.log(a / (b + np.maximum(x, 1.0) - 1.0))
    return np.where(x == 0, 1.0, expit(-log_div))


def expected_average_value(gg: GammaGammaParams, frequency: Any, monetary_value: Any) -> np.ndarray:
    """Expected mean value of a customer's future purchases (Hardie's note 025, equation 5).

    Equals lifetimes ``GammaGammaFitter.conditional_expected_average_profit(frequency, monetary_value)``:
    a weighted average of the observed mean ``monetary_value`` and the population mean ``p * v / (q - 1)``,
    with weight ``p * x / (p * x + q - 1)`` on the customer's own mean (so 0 for ``x == 0``).
    """
    p, q, v = (float(c) for c in gg)
    x, m = _broadcast(frequency, monetary_value)
    individual_weight = p * x / (p * x + q - 1.0)
    population_mean = v * p / (q - 1.0)
    return (1.0 - individual_weight) * population_mean + individual_weight * m


def btyd_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lifetimes' ``(frequency, recency, T, monetary_value)`` of full feature rows, in days.

    With ``n`` = the ``frequency`` feature (number of purchases):

    * frequency = ``max(n - 1, 0)`` (repeat purchases);
    * recency = ``mean_days_between * (n - 1)`` when ``n >= 2`` (the first-to-last purchase span), else 0;
    * T = ``recency_days + recency`` (as-of minus first purchase);
    * monetary_value = ``aov`` (mean gross value of a purchase).

    A customer with no purchase (only returns) gets frequency 0, recency 0, T = ``recency_days`` and
    monetary value 0. Every value is a function of the purchase timestamps and amounts alone (see the
    module docstring), so the batch and the stream agree.

    Raises:
        FeatureSpecError: The matrix is not ``(n, len(FEATURE_NAMES))``, or a column read here is
            non-finite or negative, or ``frequency`` is not a whole number.
    """
    full = _full_matrix(x)
    cols = {name: full[:, FEATURE_NAMES.index(name)] for name in BTYD_FEATURES}
    for name, col in cols.items():
        if not np.isfinite(col).all():
            raise FeatureSpecError(f"feature {name!r} has a non-finite value")
        if (col < 0).any():
            raise FeatureSpecError(f"feature {name!r} has a negative value")
    n = cols["frequency"]
    if (n != np.floor(n)).any():
        raise FeatureSpecError("feature 'frequency' must be a whole number of purchases")
    frequency = np.maximum(n - 1.0, 0.0)
    recency = np.where(n >= 2, cols["mean_days_between"] * (n - 1.0), 0.0)
    big_t = cols["recency_days"] + recency
    monetary = np.where(n > 0, cols["aov"], 0.0)
    return frequency, recency, big_t, monetary


class BTYDScorer:
    """BG/NBD x Gamma-Gamma expected spend over a fixed horizon, from full feature rows.

    Plain picklable object (floats only). Parameters must come from models fitted with days as the time
    unit, because the features measure time in days.

    Attributes:
        bgnbd: The BG/NBD parameters.
        gamma_gamma: The Gamma-Gamma parameters.
        horizon_days: The horizon ``t`` of :meth:`expected_purchases` and :meth:`predict`.
        feature_names: The feature columns the scorer reads.
    """

    feature_names: tuple[str, ...] = BTYD_FEATURES

    def __init__(self, bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams, horizon_days: float) -> None:
        """Check and store the fitted parameters.

        Raises:
            ValueError: A parameter is not finite and positive, ``q <= 1`` (the population mean spend
                ``p * v / (q - 1)`` would be infinite or negative; fit with ``q_constraint=True``), or the
                horizon is negative.
        """
        self.bgnbd = BGNBDParams(*(float(v) for v in bgnbd))
        self.gamma_gamma = GammaGammaParams(*(float(v) for v in gamma_gamma))
        self.horizon_days = float(horizon_days)
        for name, value in (*self.bgnbd._asdict().items(), *self.gamma_gamma._asdict().items()):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"BTYD parameter {name} must be finite and > 0, got {value!r}")
        if self.gamma_gamma.q <= 1.0:
            raise ValueError(f"Gamma-Gamma q must be > 1 for a finite mean spend, got {self.gamma_gamma.q!r}")
        if not (math.isfinite(self.horizon_days) and self.horizon_days >= 0):
            raise ValueError(f"horizon_days must be finite and >= 0, got {horizon_days!r}")
        self.columns = column_indices(self.feature_names)

    def expected_purchases(self, x: np.ndarray) -> np.ndarray:
        """Expected repeat purchases within ``horizon_days`` of every row; 0 for a customer with no purchase."""
        full = _full_matrix(x)
        frequency, recency, big_t, _ = btyd_inputs(full)
        out = expected_purchases(self.bgnbd, self.horizon_days, frequency, recency, big_t)
        return np.where(_has_purchase(full), out, 0.0)

    def probability_alive(self, x: np.ndarray) -> np.ndarray:
        """P(alive) of every row (1 for customers with fewer than two purchases, as in lifetimes)."""
        frequency, recency, big_t, _ = btyd_inputs(x)
        return probability_alive(self.bgnbd, frequency, recency, big_t)

    def expected_value(self, x: np.ndarray) -> np.ndarray:
        """Gamma-Gamma expected value of a future purchase (the population mean for 0 or 1 purchases)."""
        frequency, _, _, monetary = btyd_inputs(x)
        return expected_average_value(self.gamma_gamma, frequency, monetary)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Expected spend within the horizon: expected purchases x expected value (0 with no purchase)."""
        full = _full_matrix(x)
        frequency, recency, big_t, monetary = btyd_inputs(full)
        purchases = expected_purchases(self.bgnbd, self.horizon_days, frequency, recency, big_t)
        value = expected_average_value(self.gamma_gamma, frequency, monetary)
        return np.where(_has_purchase(full), purchases * value, 0.0)

    def params_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (plain floats and strings)."""
        return {
            "model": "bgnbd+gamma_gamma",
            "bgnbd": dict(self.bgnbd._asdict()),
            "gamma_gamma": dict(self.gamma_gamma._asdict()),
            "horizon_days": self.horizon_days,
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_params_dict(cls, data: Mapping[str, Any]) -> BTYDScorer:
        """Rebuild a scorer from :meth:`params_dict` output."""
        return cls(
            BGNBDParams(**data["bgnbd"]),
            GammaGammaParams(**data["gamma_gamma"]),
            data["horizon_days"],
        )


def _has_purchase(full: np.ndarray) -> np.ndarray:
    """Rows of a checked full feature matrix with at least one purchase."""
    return full[:, FEATURE_NAMES.index("frequency")] > 0


def _broadcast(*arrays: Any) -> list[np.ndarray]:
    """The inputs as float64 arrays of one common shape, at least 1-D."""
    return [np.atleast_1d(a) for a in np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in arrays))]


def _numerator(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Expected purchases in ``(T, T + t]`` of a customer known to be alive: the numerator of equation 10.

    ``(a + b + x - 1) / (a - 1) * (1 - (1 - z) ** (r + x) * 2F1(r + x, b + x; a + b + x - 1; z))`` with
    ``z = t / (alpha + T + t)``, evaluated in logs as lifetimes does: if the hypergeometric function
    overflows, Euler's transformation ``2F1(a, b; c; z) = (1 - z) ** (c - a - b) * 2F1(c - a, c - b; c; z)``
    gives the same product as ``(1 - z) ** (a - 1) * 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z)``.
    Where 2F1 is negative (possible when ``c < 0``) the product is formed without logs. Where all fail, or
    give a value outside ``[0, (r + x) * t / (alpha + T)]``, the quadrature
    fallback is used.
    """
    s = r + x
    c = a + b + x - 1.0
    u = t / (alpha + big_t)
    z = t / (alpha + big_t + t)
    log_1mz = -np.log1p(u)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ln_term = np.log(hyp2f1(s, b + x, c, z)) + s * log_1mz
        bad = ~np.isfinite(ln_term)
        if bad.any():
            alt = np.log(hyp2f1(c[bad] - s[bad], a - 1.0, c[bad], z[bad])) + (a - 1.0) * log_1mz[bad]
            ln_term[bad] = alt
        out = c / (a - 1.0) * -np.expm1(ln_term)
        # The logs fail where 2F1 is negative, as it can be when c < 0 (x == 0 and a + b < 1, i.e. every
        # one-time buyer of such a fit): there the same product is taken directly, without the logs, in the
        # first form or else Euler's (equal to mpmath's 3F2 form to ~1e-13, tests/unit/models/test_btyd.py).
        signed = np.flatnonzero(bad & ~np.isfinite(ln_term))
        if signed.size:
            s_, x_, c_, z_, l_ = s.flat[signed], x.flat[signed], c.flat[signed], z.flat[signed], log_1mz.flat[signed]
            product = hyp2f1(s_, b + x_, c_, z_) * np.exp(s_ * l_)
            euler = ~np.isfinite(product)
            e_s, e_c = s_[euler], c_[euler]
            product[euler] = hyp2f1(e_c - e_s, a - 1.0, e_c, z_[euler]) * np.exp((a - 1.0) * l_[euler])
            out.flat[signed] = c_ / (a - 1.0) * (1.0 - product)
        upper = s * u
        # NaN inputs stay NaN; everything else outside the bound gets the quadrature.
        valid_input = np.isfinite(t) & np.isfinite(x) & np.isfinite(big_t) & (t >= 0) & (x >= 0) & (big_t >= 0)
        retry = valid_input & ~((out >= 0) & (out <= upper * (1.0 + _BOUND_SLACK)))
    for i in np.flatnonzero(retry):
        out.flat[i] = _numerator_by_quadrature(r, alpha, a, b, float(t.flat[i]), float(x.flat[i]), float(big_t.flat[i]))
    return out


def _numerator_by_quadrature(r: float, alpha: float, a: float, b: float, t: float, x: float, big_t: float) -> float:
    """The numerator of equation 10 as an integral over the posterior drop-out probability.

    Alive at T, a customer's posterior is ``lambda ~ Gamma(r + x, alpha + T)`` and ``p ~ Beta(a, b + x)``,
    and ``E[purchases in t | lambda, p] = (1 - exp(-lambda p t)) / p``. Averaging over ``lambda`` gives
    ``h(p) = (1 - (1 + p u) ** -(r + x)) / p`` with ``u = t / (alpha + T)``, bounded by ``(r + x) u``, so the
    numerator is ``E[h(p)]`` under Beta(a, b + x), finite for every ``a, b > 0`` (the closed form's
    ``1 / (a - 1)`` cancels). The Beta density is evaluated in logs; breakpoints at powers of ten around the
    posterior mean (and at ``1 / u``, where ``h`` bends) let adaptive quadrature resolve the peak and the
    integrable singularity at 0 when ``a < 1``. Accurate to ~1e-11 relative (only ~1e-8 when ``b + x < 1``,
    where the density is also singular at 1); ~1 ms a call, so used only where no closed form evaluates.
    """
    s = r + x
    u = t / (alpha + big_t)
    if u <= 0.0:
        return 0.0
    beta_exponent = b + x - 1.0
    log_norm = float(betaln(a, b + x))

    def integrand(p: float) -> float:
        if p <= 0.0 or p >= 1.0:
            return 0.0
        h = -math.expm1(-s * math.log1p(p * u)) / p
        return h * math.exp(min((a - 1.0) * math.log(p) + beta_exponent * math.log1p(-p) - log_norm, 700.0))

    mean = a / (a + b + x)
    breaks = {mean * 10.0**k for k in range(-8, 4)}
    breaks.add(1.0 / u)
    edges = [0.0, *sorted(p for p in breaks if 0.0 < p < 1.0), 1.0]
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        total += quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-12, limit=200, full_output=1)[0]
    return max(total, 0.0)


def btyd_columns(scorer: BTYDScorer, x: np.ndarray) -> np.ndarray:
    """The BTYD model's view of each row, as extra model inputs: spend, purchases, P(alive), value.

    The same numbers as ``scorer.predict``, ``scorer.expected_purchases``, ``scorer.probability_alive`` and
    ``scorer.expected_value``, with the inputs checked and the closed forms evaluated once.
    """
    full = _full_matrix(x)
    frequency, recency, big_t, monetary = btyd_inputs(full)
    r, alpha, a, b = scorer.bgnbd
    t_, x_, _, big_t_ = _broadcast(scorer.horizon_days, frequency, recency, big_t)
    alive = probability_alive(scorer.bgnbd, frequency, recency, big_t)
    purchases = _numerator(r, alpha, a, b, t_, x_, big_t_) * alive
    value = expected_average_value(scorer.gamma_gamma, frequency, monetary)
    has_purchase = _has_purchase(full)
    return np.column_stack(
        [np.where(has_purchase, purchases * value, 0.0), np.where(has_purchase, purchases, 0.0), alive, value]
    )


class BTYDCorrectedScorer:
    """BG/NBD x Gamma-Gamma expected spend plus a learned correction of its residuals.

    The buy-till-you-die model knows how purchase counts decay; the correction (a fitted regressor with
    ``predict``, e.g. boosted trees) knows what the features add, such as recent spend. It is trained on
    ``realised spend - BTYD spend`` with the features and :func:`btyd_columns` as inputs, so where it has
    nothing to add it adds about zero and the prediction stays BG/NBD's.
    """

    def __init__(self, btyd: BTYDScorer, correction: Any) -> None:
        """Wrap a fitted BTYD scorer and a regressor fitted on :meth:`design` rows."""
        self.btyd = btyd
        self.correction = correction
        self.feature_names = FEATURE_NAMES

    def design(self, x: np.ndarray) -> np.ndarray:
        """The correction's inputs: every feature, then the BTYD columns."""
        full = _full_matrix(x)
        return np.ascontiguousarray(np.hstack([full, btyd_columns(self.btyd, full)]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted spend within the horizon."""
        full = _full_matrix(x)
        correction = np.asarray(self.correction.predict(self.design(full)), dtype=np.float64)
        return self.btyd.predict(full) + correction
