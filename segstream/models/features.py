"""Per-customer features: one spec, one formula, shared by the trainer and the stream.

A customer's features are a pure function of (the set of that customer's events, the as-of time T).
The computation has two steps so that both sides can build the first one their own way and share the
second one exactly:

1. **Aggregates** (:data:`AGGREGATE_FIELDS`): integer sums and min/max timestamps over the events, plus
   spend and purchase counts per calendar-day window. All money is held in integer cents and all times
   in integer epoch milliseconds, so sums do not depend on the order events were added in (floating-point
   addition is not associative; integer addition is). The stream folds events into
   :class:`~segstream.models.customer_state.CustomerState` (kept in Redis); the trainer aggregates a
   DataFrame with pandas (:func:`batch_aggregates`).
2. **Features** (:func:`features_from_aggregates`): one vectorised numpy formula turning aggregates and T
   into the float feature matrix, in :data:`FEATURE_SPEC` order.

As-of rule: T is the stream's event-time watermark (the largest event timestamp seen so far); in batch it
is the largest timestamp in the file (or an explicit cutoff, with later events excluded). T is never
before a customer's last event, so recency is never negative.

Window rule: an event on UTC day ``d`` counts in the W-day window as of T when
``day(T) - W < d <= day(T)``: whole calendar days, so the stream can keep one bucket per day.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from segstream.models.attributes import AttributeSpec
    from segstream.models.preferences import PreferenceSpec

DAY_MS = 86_400_000
WINDOWS_DAYS: tuple[int, ...] = (30, 90, 365)

# Why these constants: they shape the predicted-CLV heuristic and are part of the spec hash, so a change
# to any of them is a new feature version and old bundles are refused.
_MIN_TENURE_FOR_RATE_DAYS = 30.0
_MIN_ALIVE_SCALE_DAYS = 30.0
_CLV_HORIZON_DAYS = 365.0


@dataclass(frozen=True)
class FeatureSpec:
    """Names and order of the features, with a version and a content hash.

    Attributes:
        name: Family name of the feature set.
        version: Bumped by hand whenever a formula changes.
        names: Feature names in matrix column order.
        windows_days: The rolling windows, in days.
        attributes: The customer attributes joined to the features (``--attributes``), or None. Without
            them the spec, its dict and its hash are exactly those of the behaviour-only features.
        behaviour: False for a profile-only model (attributes alone, no transaction features).
        preferences: The product-preference features (``--preferences``: the training data's top
            categories), or None; like the attributes, part of the hash only when chosen.
    """

    name: str
    version: int
    names: tuple[str, ...]
    windows_days: tuple[int, ...]
    attributes: AttributeSpec | None = None
    behaviour: bool = True
    preferences: PreferenceSpec | None = None

    @property
    def hash(self) -> str:
        """sha256 over everything that defines the features (names, order, windows, constants, attributes)."""
        payload: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "names": list(self.names),
            "windows_days": list(self.windows_days),
            "day_ms": DAY_MS,
            "constants": [_MIN_TENURE_FOR_RATE_DAYS, _MIN_ALIVE_SCALE_DAYS, _CLV_HORIZON_DAYS],
        }
        # Only present when chosen, so a behaviour-only spec hashes as it always has.
        if self.attributes is not None:
            payload["attributes"] = self.attributes.to_dict()
        if not self.behaviour:
            payload["behaviour"] = False
        if self.preferences is not None:
            payload["preferences"] = self.preferences.to_dict()
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def input_names(self) -> tuple[str, ...]:
        """Columns of a model input row: the behaviour features (unless profile-only), the product
        preferences, then the attributes."""
        behaviour = self.names if self.behaviour else ()
        preferences = self.preferences.names if self.preferences is not None else ()
        return (*behaviour, *preferences, *(self.attributes.columns if self.attributes is not None else ()))

    def with_preferences(self, preferences: PreferenceSpec | None) -> FeatureSpec:
        """This spec with the product-preference features (None: without)."""
        return replace(self, preferences=preferences)

    def with_attributes(self, attributes: AttributeSpec | None, *, behaviour: bool = True) -> FeatureSpec:
        """This spec with attributes joined (``behaviour=False``: attributes only, a profile-only model)."""
        if attributes is None and not behaviour:
            raise ValueError("a profile-only feature spec needs attributes")
        return replace(self, attributes=attributes, behaviour=behaviour)

    def to_dict(self) -> dict[str, object]:
        """The spec as stored in a bundle manifest."""
        out: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "names": list(self.names),
            "windows_days": list(self.windows_days),
        }
        if self.attributes is not None:
            out["attributes"] = self.attributes.to_dict()
        if not self.behaviour:
            out["behaviour"] = False
        if self.preferences is not None:
            out["preferences"] = self.preferences.to_dict()
        out["hash"] = self.hash
        return out

    @classmethod
    def for_manifest(cls, spec: dict[str, Any]) -> FeatureSpec:
        """The running code's spec for what a bundle manifest's ``feature_spec`` says it needs.

        Its hash equals the manifest's only if this code computes the same features and encodes the same
        attributes the same way; pass it as ``expected_feature_hash`` when loading.
        """
        out = FEATURE_SPEC
        if "attributes" in spec:
            from segstream.models.attributes import AttributeSpec

            out = out.with_attributes(AttributeSpec.from_dict(spec["attributes"]),
                                      behaviour=bool(spec.get("behaviour", True)))  # fmt: skip
        if "preferences" in spec:
            from segstream.models.preferences import PreferenceSpec

            out = out.with_preferences(PreferenceSpec.from_dict(spec["preferences"]))
        return out


FEATURE_NAMES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "tenure_days",
    "purchase_rate",
    "mean_days_between",
    *(f"spend_{w}d" for w in WINDOWS_DAYS),
    *(f"purchases_{w}d" for w in WINDOWS_DAYS),
    "returns_count",
    "returns_amount",
    "clv_historical",
    "clv_12m_predicted",
)

FEATURE_SPEC = FeatureSpec(name="customer-rfm", version=1, names=FEATURE_NAMES, windows_days=WINDOWS_DAYS)

# Integer aggregates the feature formula reads. Timestamps are epoch ms; money is cents.
AGGREGATE_FIELDS: tuple[str, ...] = (
    "first_ts",
    "last_ts",
    "first_purchase_ts",
    "last_purchase_ts",
    "purchases",
    "gross_cents",
    "net_cents",
    "returns",
    "returns_cents",
    *(f"net_cents_{w}d" for w in WINDOWS_DAYS),
    *(f"purchases_{w}d" for w in WINDOWS_DAYS),
)

# Sentinel for "no purchase yet" in the purchase timestamps (customers with only returns).
NO_TIMESTAMP = -1


def to_cents(amount: float) -> int:
    """Round a money amount to integer cents (round half to even, like numpy's ``rint``)."""
    return int(round(amount * 100))


def day_index(ts_ms: int) -> int:
    """The UTC calendar day an epoch-millisecond timestamp falls on."""
    return ts_ms // DAY_MS


def features_from_aggregates(agg: dict[str, np.ndarray], as_of_ms: int | np.ndarray) -> np.ndarray:
    """Turn aggregates into the feature matrix.

    Args:
        agg: One int64 array per name in :data:`AGGREGATE_FIELDS`, all of length n (one row a customer).
        as_of_ms: The as-of time T in epoch ms, one for all rows or one per row; never before a row's
            ``last_ts``.

    Returns:
        A float64 array of shape (n, len(FEATURE_NAMES)) in :data:`FEATURE_SPEC` order.
    """
    t = np.asarray(as_of_ms, dtype=np.int64)
    first_ts = np.asarray(agg["first_ts"], dtype=np.int64)
    purchases = np.asarray(agg["purchases"], dtype=np.int64)
    has_purchase = purchases > 0
    first_p = np.asarray(agg["first_purchase_ts"], dtype=np.int64)
    last_p = np.asarray(agg["last_purchase_ts"], dtype=np.int64)
    n_purchases = purchases.astype(np.float64)
    safe_purchases = np.maximum(n_purchases, 1.0)

    tenure = (t - first_ts) / DAY_MS
    recency = np.where(has_purchase, (t - last_p) / DAY_MS, tenure)
    monetary = np.asarray(agg["net_cents"], dtype=np.int64) / 100.0
    aov = np.where(has_purchase, np.asarray(agg["gross_cents"], dtype=np.int64) / 100.0 / safe_purchases, 0.0)
    rate = n_purchases / np.maximum(tenure, 1.0) * 30.0
    # With fewer than two purchases the gap is unknown; the time since the first event is a lower bound.
    span = (last_p - first_p) / DAY_MS
    mean_gap = np.where(purchases >= 2, span / np.maximum(n_purchases - 1.0, 1.0), tenure)

    windows = []
    for w in WINDOWS_DAYS:
        windows.append(np.asarray(agg[f"net_cents_{w}d"], dtype=np.int64) / 100.0)
    for w in WINDOWS_DAYS:
        windows.append(np.asarray(agg[f"purchases_{w}d"], dtype=np.int64).astype(np.float64))

    returns = np.asarray(agg["returns"], dtype=np.int64).astype(np.float64)
    returns_amount = np.asarray(agg["returns_cents"], dtype=np.int64) / 100.0

    # Predicted 12-month CLV: expected purchases over the horizon at the customer's own rate, times the
    # net value of a purchase, discounted by a "still alive" factor that decays once the customer has been
    # silent for longer than their usual gap.
    daily_rate = n_purchases / np.maximum(tenure, _MIN_TENURE_FOR_RATE_DAYS)
    p_alive = np.exp(-recency / np.maximum(2.0 * mean_gap, _MIN_ALIVE_SCALE_DAYS))
    value_per_purchase = np.maximum(monetary, 0.0) / safe_purchases
    clv_pred = np.where(has_purchase, p_alive * daily_rate * _CLV_HORIZON_DAYS * value_per_purchase, 0.0)

    columns = [
        recency,
        n_purchases,
        monetary,
        aov,
        tenure,
        rate,
        mean_gap,
        *windows,
        returns,
        returns_amount,
        monetary,
        clv_pred,
    ]
    n = first_ts.shape[0]
    return np.column_stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in columns])


def batch_aggregates(events: pd.DataFrame, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Aggregate clean events per customer with pandas (the trainer's side of step 1).

    Args:
        events: Clean events with ``customer_id``, ``timestamp`` (datetime64, UTC) and ``amount``; each
            ``event_id`` at most once (cleaning drops duplicates).
        as_of: The as-of time; events after it are excluded. Defaults to the latest timestamp.

    Returns:
        One row per customer (index ``customer_id``, sorted) with the int64 columns of
        :data:`AGGREGATE_FIELDS`, and the as-of time in ``attrs["as_of_ms"]``.
    """
    ts_ms = _epoch_ms(events["timestamp"])
    as_of_ms = int(ts_ms.max()) if as_of is None else int(pd.Timestamp(as_of).value // 1_000_000)
    keep = ts_ms <= as_of_ms
    frame = pd.DataFrame(
        {
            "customer_id": events["customer_id"].to_numpy()[keep],
            "ts": ts_ms[keep],
            "cents": np.rint(events["amount"].to_numpy(dtype=np.float64)[keep] * 100).astype(np.int64),
        }
    )
    is_purchase = frame["cents"].to_numpy() >= 0
    day = frame["ts"].to_numpy() // DAY_MS
    as_of_day = as_of_ms // DAY_MS
    frame["purchase_ts"] = np.where(is_purchase, frame["ts"], np.nan)
    frame["purchases"] = is_purchase.astype(np.int64)
    frame["gross_cents"] = np.where(is_purchase, frame["cents"], 0)
    frame["returns"] = (~is_purchase).astype(np.int64)
    frame["returns_cents"] = np.where(is_purchase, 0, -frame["cents"])
    for w in WINDOWS_DAYS:
        in_window = day > as_of_day - w
        frame[f"net_cents_{w}d"] = np.where(in_window, frame["cents"], 0)
        frame[f"purchases_{w}d"] = (in_window & is_purchase).astype(np.int64)

    grouped = frame.groupby("customer_id", sort=True)
    sums = grouped[
        ["purchases", "gross_cents", "cents", "returns", "returns_cents"]
        + [f"net_cents_{w}d" for w in WINDOWS_DAYS]
        + [f"purchases_{w}d" for w in WINDOWS_DAYS]
    ].sum()
    out = pd.DataFrame(index=sums.index)
    out["first_ts"] = grouped["ts"].min()
    out["last_ts"] = grouped["ts"].max()
    out["first_purchase_ts"] = grouped["purchase_ts"].min().fillna(NO_TIMESTAMP).astype(np.int64)
    out["last_purchase_ts"] = grouped["purchase_ts"].max().fillna(NO_TIMESTAMP).astype(np.int64)
    out["purchases"] = sums["purchases"]
    out["gross_cents"] = sums["gross_cents"]
    out["net_cents"] = sums["cents"]
    out["returns"] = sums["returns"]
    out["returns_cents"] = sums["returns_cents"]
    for w in WINDOWS_DAYS:
        out[f"net_cents_{w}d"] = sums[f"net_cents_{w}d"]
    for w in WINDOWS_DAYS:
        out[f"purchases_{w}d"] = sums[f"purchases_{w}d"]
    out = out[list(AGGREGATE_FIELDS)].astype(np.int64)
    out.index = out.index.astype(str)
    out.index.name = "customer_id"
    out.attrs["as_of_ms"] = as_of_ms
    return out


def batch_features(events: pd.DataFrame, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Features for every customer in a clean events table, as of ``as_of`` (default: latest event).

    Returns:
        A float64 DataFrame indexed by ``customer_id`` with the :data:`FEATURE_NAMES` columns; the as-of
        time is in ``attrs["as_of_ms"]``.
    """
    return features_of_aggregates(batch_aggregates(events, as_of))


def features_of_aggregates(agg: pd.DataFrame) -> pd.DataFrame:
    """The feature frame of an aggregate frame (:func:`batch_aggregates`' shape, as of ``attrs["as_of_ms"]``),
    however the aggregates were computed (pandas here, a database GROUP BY in the trainer's pushdown)."""
    as_of_ms = int(agg.attrs["as_of_ms"])
    matrix = features_from_aggregates({k: agg[k].to_numpy() for k in AGGREGATE_FIELDS}, as_of_ms)
    out = pd.DataFrame(matrix, index=agg.index, columns=list(FEATURE_NAMES))
    out.attrs["as_of_ms"] = as_of_ms
    return out


def _epoch_ms(timestamps: pd.Series) -> np.ndarray:
    """Epoch milliseconds of a tz-aware or naive-UTC datetime column, whatever its resolution."""
    ts = pd.to_datetime(timestamps, utc=True)
    return (ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64)).to_numpy()
