"""``segstream backtest``: does a segmentation predict anything a marketer cares about?

Train on the events before a cutoff, score every customer as of the cutoff with the bundle exactly as
``score`` and the stream would, then look at the ``horizon_days`` after the cutoff, which no model saw:

- per segment: customers, share who buy again in the horizon, mean and median spend in it;
- eta^2 (share of variance explained by the grouping) of horizon spend and of "bought again", for the
  trained segments, the classic RFM map and, as a reference, monetary quantile groups of the same count;
- the purchase models against the realised spend (RMSE, MAE): each trainer candidate, the one ``score``
  uses, the naive "same as the last 90 days" and BG/NBD + Gamma-Gamma fitted with ``lifetimes`` on its own
  standard summary of the transactions (the model a practitioner would reach for, exactly as they would);
- the sales forecasters against the realised daily sales (Prophet, random forest, seasonal naive).

The cutoff is the instant 00:00 UTC of the given day: training sees events strictly before it, and the
horizon is ``[cutoff, cutoff + horizon_days)``.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.models.bundle import load_bundle
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, batch_features
from segstream.models.forecasting import forecast_all
from segstream.models.rfm import RFM_CELLS
from segstream.models.serving import SERVING, ServingModels
from segstream.trainer.btyd_fit import first_converging
from segstream.trainer.errors import TrainerError
from segstream.trainer.pipeline import TrainOptions, train_bundle
from segstream.trainer.purchase import BASELINE, CANDIDATES, calibration_holdout, fit_candidate
from segstream.trainer.rfm_segmentation import RFM, rfm_cells

FLATTERING = ("Champions", "Loyal", "Big spenders")
LIFETIMES_BASELINE = "bgnbd_gamma_gamma_lifetimes"
USED_BY_SCORE = "used_by_score"


class BacktestError(TrainerError):
    """The history cannot be backtested at that cutoff (nothing before it, or nothing to compare after)."""


@dataclass(frozen=True)
class Split:
    """The events on each side of the cutoff."""

    before: pd.DataFrame
    horizon: pd.DataFrame
    cutoff: pd.Timestamp
    horizon_days: int

    @property
    def as_of(self) -> pd.Timestamp:
        """The scoring time: the last millisecond before the cutoff."""
        return self.cutoff - pd.Timedelta(milliseconds=1)


def split_at(events: pd.DataFrame, cutoff: str | pd.Timestamp, horizon_days: int) -> Split:
    """Split clean events at ``cutoff`` (a day, 00:00 UTC) into training events and the horizon after it."""
    at = pd.Timestamp(cutoff)
    at = (at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")).normalize()
    ts = pd.to_datetime(events["timestamp"], utc=True)
    end = at + pd.Timedelta(days=horizon_days)
    before, horizon = events.loc[ts < at], events.loc[(ts >= at) & (ts < end)]
    first, last = ts.min(), ts.max()
    if before.empty:
        raise BacktestError(f"no event before the cutoff {at.date()} (the data starts {first.date()})")
    if horizon.empty:
        raise BacktestError(
            f"no event in the {horizon_days} days from the cutoff {at.date()} (the data ends {last.date()})"
        )
    if last < end - pd.Timedelta(days=1):
        raise BacktestError(
            f"the data ends {last.date()}, before the horizon does ({(end - pd.Timedelta(days=1)).date()}): "
            f"choose a cutoff at least {horizon_days} days before the end, or a shorter --horizon"
        )
    return Split(before, horizon, at, horizon_days)


def eta_squared(groups: np.ndarray, values: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by the group means (between / total sum of squares)."""
    values = np.asarray(values, dtype=np.float64)
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0.0:
        return 0.0
    frame = pd.DataFrame({"g": np.asarray(groups), "v": values})
    stats = frame.groupby("g")["v"].agg(["mean", "size"])
    between = float((stats["size"] * (stats["mean"] - values.mean()) ** 2).sum())
    return between / total


def monetary_groups(monetary: np.ndarray, count: int) -> np.ndarray:
    """Quantile groups 0..count-1 of monetary by rank (ties broken by order, so groups are equal-sized)."""
    ranks = pd.Series(monetary).rank(method="first").to_numpy()
    return np.minimum(((ranks - 1) * count // len(ranks)).astype(np.int64), count - 1)


def _outcomes(split: Split, customers: pd.Index) -> pd.DataFrame:
    h = split.horizon
    purchases = h.loc[h["amount"] >= 0].groupby(h.loc[h["amount"] >= 0, "customer_id"].astype(str)).size()
    spend = h.groupby(h["customer_id"].astype(str))["amount"].sum()
    return pd.DataFrame(
        {
            "bought_again": purchases.reindex(customers, fill_value=0).to_numpy() > 0,
            "spend": spend.reindex(customers, fill_value=0.0).to_numpy(dtype=np.float64),
        },
        index=customers,
    )


def _grouping(groups: np.ndarray, outcomes: pd.DataFrame, names: dict[int, str], about: dict[int, str]) -> dict:
    frame = outcomes.assign(group=groups)
    rows = []
    for gid, part in frame.groupby("group", sort=True):
        rows.append(
            {
                "segment": int(gid),
                "name": names.get(int(gid), str(gid)),
                "description": about.get(int(gid), ""),
                "customers": int(len(part)),
                "share": float(len(part) / len(frame)),
                "repeat_rate": float(part["bought_again"].mean()),
                "mean_spend": float(part["spend"].mean()),
                "median_spend": float(part["spend"].median()),
            }
        )
    return {
        "groups": len(rows),
        "eta2_spend": eta_squared(groups, outcomes["spend"].to_numpy()),
        "eta2_repeat": eta_squared(groups, outcomes["bought_again"].to_numpy(dtype=np.float64)),
        "segments": rows,
    }


def _errors(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    err = np.asarray(predicted, dtype=np.float64) - actual
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def lifetimes_spend(before: pd.DataFrame, customers: pd.Index, cutoff: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """BG/NBD + Gamma-Gamma the way a practitioner runs it: lifetimes' own summary, fit and prediction.

    Daily periods (``freq="D"``), purchases only (returns are not transactions to these models), the
    Gamma-Gamma fitted on repeat buyers with positive mean value, no penalty unless a fit does not
    converge without one. Customers lifetimes cannot place (only
    returns before the cutoff) are predicted 0.
    """
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    buys = before.loc[before["amount"] > 0, ["customer_id", "timestamp", "amount"]].copy()
    buys["customer_id"] = buys["customer_id"].astype(str)
    buys["timestamp"] = pd.to_datetime(buys["timestamp"], utc=True).dt.tz_localize(None)
    end = cutoff.tz_localize(None) - pd.Timedelta(days=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes warns on pandas idioms
        summary = summary_data_from_transaction_data(
            buys, "customer_id", "timestamp", monetary_value_col="amount", observation_period_end=end, freq="D"
        )
    # As lifetimes advises when a fit does not converge: the smallest penalty that makes it converge.
    bg = first_converging(
        lambda pen: BetaGeoFitter(penalizer_coef=pen).fit(summary["frequency"], summary["recency"], summary["T"])
    )
    repeat = summary.loc[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    gg = first_converging(
        lambda pen: GammaGammaFitter(penalizer_coef=pen).fit(
            repeat["frequency"], repeat["monetary_value"], q_constraint=True
        )
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        purchases = bg.conditional_expected_number_of_purchases_up_to_time(
            horizon_days, summary["frequency"], summary["recency"], summary["T"]
        )
        value = gg.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"])
    spend = pd.Series(np.asarray(purchases) * np.asarray(value), index=summary.index.astype(str))
    return spend.reindex(customers, fill_value=0.0).to_numpy(dtype=np.float64)


def _spend_models(split: Split, serving: ServingModels, x: np.ndarray, customers: pd.Index, actual: np.ndarray,
                  seed: int) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    cal_x, cal_y, _ = calibration_holdout(split.before, split.horizon_days)
    cal = cal_x[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    skipped: dict[str, str] = {}
    for name in CANDIDATES:
        try:
            scorer = fit_candidate(name, cal, cal_y.to_numpy(), split.horizon_days, seed)
        except TrainerError as exc:
            skipped[name] = str(exc)
            continue
        out[name] = _errors(actual, scorer.predict(x))
    out[USED_BY_SCORE] = _errors(actual, serving.predict_spend(x))
    naive = x[:, FEATURE_NAMES.index("spend_90d")] * split.horizon_days / 90.0
    out[BASELINE] = _errors(actual, naive)
    try:
        out[LIFETIMES_BASELINE] = _errors(actual, lifetimes_spend(split.before, customers, split.cutoff,
                                                                  split.horizon_days))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 (lifetimes raises its own and numpy errors; report, do not die)
        skipped[LIFETIMES_BASELINE] = f"{type(exc).__name__}: {exc}"
    if skipped:
        out["skipped"] = skipped
    return out


def _forecasts(split: Split, seed: int) -> dict[str, Any]:
    def per_day(frame: pd.DataFrame) -> pd.Series:
        day = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
        return frame["amount"].groupby(day).sum()

    start = per_day(split.before).index.min()
    cutoff_day = split.cutoff.tz_localize(None)
    history_days = pd.date_range(start, cutoff_day - pd.Timedelta(days=1), freq="D")
    history = per_day(split.before).reindex(history_days, fill_value=0.0)
    future = pd.date_range(cutoff_day, periods=split.horizon_days, freq="D")
    actual = per_day(split.horizon).reindex(future, fill_value=0.0).to_numpy(dtype=np.float64)
    daily = pd.DataFrame({"date": history_days, "series": "total", "sales": history.to_numpy(dtype=np.float64)})
    forecasts = forecast_all(daily, split.horizon_days, generated_at=split.cutoff)
    out: dict[str, Any] = {"days": int(split.horizon_days), "history_days": int(len(history_days))}
    series: dict[str, list[float]] = {"actual": [float(v) for v in actual]}
    for model, part in forecasts.groupby("model"):
        yhat = part.sort_values("date")["yhat"].to_numpy(dtype=np.float64)
        out[str(model)] = {**_errors(actual, yhat), "notes": str(part["notes"].iloc[0] or "")}
        series[str(model)] = [float(v) for v in yhat]
    out["series"] = {"dates": [d.date().isoformat() for d in future], **series}
    return out


def _checks(result: dict[str, Any], k_range: range) -> dict[str, Any]:
    groupings = result["groupings"]
    trained = groupings["segments"]
    population_repeat = result["population"]["repeat_rate"]
    flattering = [
        s["name"] for s in trained["segments"] if s["name"] in FLATTERING and s["repeat_rate"] < population_repeat
    ]
    checks: dict[str, Any] = {"flattering_names_below_population_repeat": flattering}
    if result["bundle"]["segmenter"] != RFM:
        checks["k_in_range"] = k_range.start <= result["bundle"]["k"] < k_range.stop
        rfm = groupings["rfm_map"]
        checks["eta2_spend_at_least_rfm"] = trained["eta2_spend"] >= rfm["eta2_spend"]
        checks["fewer_groups_than_rfm"] = trained["groups"] < rfm["groups"]
    spend = result["spend_models"]
    used = spend[USED_BY_SCORE]
    checks["score_model_beats_naive"] = used["rmse"] < spend[BASELINE]["rmse"] and used["mae"] < spend[BASELINE]["mae"]
    if LIFETIMES_BASELINE in spend:
        btyd = spend[LIFETIMES_BASELINE]
        checks["score_model_at_or_below_bgnbd"] = {
            "rmse": used["rmse"] <= btyd["rmse"],
            "mae": used["mae"] <= btyd["mae"],
        }
    forecasts = result["forecasts"]
    if "prophet" in forecasts and "seasonal_naive" in forecasts:
        checks["prophet_beats_seasonal_naive"] = forecasts["prophet"]["mae"] < forecasts["seasonal_naive"]["mae"]
    return checks


def run_backtest(
    events: pd.DataFrame,
    cutoff: str | pd.Timestamp,
    horizon_days: int = 90,
    *,
    options: TrainOptions | None = None,
    source: str = "",
    bundle_dir: Path | None = None,
) -> dict[str, Any]:
    """Train before ``cutoff``, score as of it, and measure everything against the ``horizon_days`` after.

    Args:
        events: Clean events (the whole history; the split happens here).
        cutoff: A day; training sees events strictly before 00:00 UTC of it.
        horizon_days: Length of the unseen period that judges the models.
        options: Training options (segmenter, k range, seed); the purchase horizon is set to ``horizon_days``.
        source: Where the events came from (reported).
        bundle_dir: Keep the trained bundle here (default: a temporary directory, removed afterwards).

    Returns:
        The JSON-ready result (see the module docstring); ``result["checks"]`` says which targets hold.
    """
    split = split_at(events, cutoff, horizon_days)
    opts = options or TrainOptions()
    opts = TrainOptions(**{**opts.__dict__, "purchase_horizon_days": horizon_days})
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(bundle_dir) if bundle_dir else Path(tmp) / "bundle"
        trained = train_bundle(split.before, target, options=opts, source=source)
        serving: ServingModels = load_bundle(target, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING]).artifact(
            SERVING
        )
    features = batch_features(split.before, as_of=split.as_of)
    x = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    outcomes = _outcomes(split, features.index)
    segments = serving.predict_segments(x)
    _, cells = rfm_cells(features)
    k = len(np.unique(segments))
    groupings = {
        "segments": _grouping(segments, outcomes, serving.names, serving.segment_descriptions),
        "rfm_map": _grouping(cells, outcomes, dict(enumerate(RFM_CELLS)), {}),
        "monetary_quantiles": _grouping(
            monetary_groups(x[:, FEATURE_NAMES.index("monetary")], k),
            outcomes,
            {i: f"monetary quantile {i + 1} of {k}" for i in range(k)},
            {},
        ),
    }
    seg_metrics = trained.metrics["segmentation"]
    result: dict[str, Any] = {
        "data": {
            "source": source,
            "cutoff": split.cutoff.date().isoformat(),
            "horizon_days": int(horizon_days),
            "events_before": int(len(split.before)),
            "events_in_horizon": int(len(split.horizon)),
            "customers": int(len(features)),
        },
        "bundle": {
            "version": trained.version,
            "segmenter": opts.segmenter,
            "k": int(seg_metrics["k"]),
            "k_reason": seg_metrics["k_reason"],
            "purchase_model": trained.metrics["purchase"] and next(
                (n for n, m in trained.metrics["purchase"].items() if isinstance(m, dict) and m.get("final")), None
            ),
        },
        "population": {
            "repeat_rate": float(outcomes["bought_again"].mean()),
            "mean_spend": float(outcomes["spend"].mean()),
            "median_spend": float(outcomes["spend"].median()),
        },
        "groupings": groupings,
        "spend_models": _spend_models(split, serving, x, features.index, outcomes["spend"].to_numpy(), opts.seed),
        "forecasts": _forecasts(split, opts.seed),
    }
    result["checks"] = _checks(result, opts.k_range)
    return result
