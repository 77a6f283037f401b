"""Synthetic but realistic transaction history, for demos, tests and benchmarks.

Everything is vectorised with numpy (no Python loop over events), so a million rows take seconds. The
output depends only on the arguments: the same arguments give the same rows and the same file bytes.

How the history is built:

* Every customer gets a behaviour profile (champion, big-ticket, new, churned, low-value), a personal
  purchase rate (log-uniform within the profile's range), a typical ticket drawn from a Pareto law (so
  spend is heavy-tailed) and an active window: most customers exist from the first day, some arrive
  later, "new" customers arrive in the last weeks and churners stop buying part-way through.
* Purchase days follow one shared intensity (weekly and yearly seasonality times a growth trend),
  sampled exactly by inverting its cumulative sum within each customer's window; hours follow a daily
  profile with a lunch and an evening peak.
* Some purchases are returned a few days later by the same customer, for the full or a smaller amount
  (never more), as a negative ``amount`` and ``quantity``.
* ``dirty_fraction`` of the rows are then spoiled the way real exports are: missing customer id, exact
  duplicate rows (same ``event_id``), unparseable ``timestamp`` or ``amount`` values.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from segstream.trainer.loading import write_table

__all__ = ["COLUMNS", "DEFAULT_END", "generate_transactions", "write_table"]

DEFAULT_END = dt.date(2025, 12, 31)
COLUMNS = (
    "event_id", "customer_id", "timestamp", "amount", "quantity",
    "currency", "channel", "store_id", "category",
)
CHANNELS = np.array(["web", "store", "app"])
CATEGORIES = np.array(["grocery", "apparel", "electronics", "home", "beauty", "sports", "toys", "books"])

# name, share of customers, purchase rate per day (low, high), Pareto scale of the typical ticket,
# return probability per purchase, channel weights (web, store, app), category weights.
_PROFILES = (
    ("champion", 0.12, (0.10, 0.30), 30.0, 0.03, (0.3, 0.3, 0.4), (4, 3, 1, 2, 3, 2, 1, 2)),
    ("big_ticket", 0.13, (0.008, 0.02), 220.0, 0.08, (0.3, 0.6, 0.1), (0, 1, 6, 5, 0, 2, 0, 0)),
    ("new", 0.15, (0.05, 0.12), 25.0, 0.04, (0.4, 0.2, 0.4), (3, 3, 1, 1, 3, 1, 2, 2)),
    ("churned", 0.20, (0.04, 0.12), 30.0, 0.05, (0.4, 0.4, 0.2), (3, 3, 1, 2, 2, 2, 1, 1)),
    ("low_value", 0.40, (0.01, 0.035), 7.0, 0.02, (0.3, 0.5, 0.2), (6, 2, 0, 1, 2, 1, 1, 2)),
)
_PARETO_ALPHA = 3.0
# Tuned so that 5000 customers over 365 days give about 100k rows.
_DENSITY = 1.51
_WEEKLY = np.array([0.90, 0.85, 0.90, 0.95, 1.10, 1.35, 0.95])  # Monday..Sunday
_YEARLY_AMPLITUDE = 0.25  # peak mid-December, trough mid-June
_TREND_PER_YEAR = 0.20
_HOURLY = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 11, 13, 11, 9, 9, 10, 12, 14, 14, 11, 7, 4, 2], float)
_ZERO_AMOUNT_SHARE = 0.001  # free promotional items
_BAD_TIMESTAMPS = np.array(["not a date", "2025-02-30T10:00:00+00:00", "31/12/2025 25:61", "yesterday"])
_BAD_AMOUNTS = np.array(["abc", "12,50", "NaN", "n/a", "inf"])


def _intensity(start: dt.date, days: int) -> np.ndarray:
    """Relative purchase intensity per day (mean 1): weekly x yearly seasonality x trend."""
    dates = np.datetime64(start, "D") + np.arange(days)
    weekday = (dates.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday
    doy = (dates - dates.astype("datetime64[Y]")).astype("int64")
    yearly = 1.0 + _YEARLY_AMPLITUDE * np.cos(2 * np.pi * (doy - 350) / 365.25)
    trend = 1.0 + _TREND_PER_YEAR * np.arange(days) / 365.0
    lam = _WEEKLY[weekday] * yearly * trend
    return lam / lam.mean()


def _customers(rng: np.random.Generator, n: int, days: int) -> dict[str, np.ndarray]:
    """Per-customer profile, rate, ticket and active window [first_day, last_day)."""
    shares = np.array([p[1] for p in _PROFILES])
    profile = rng.choice(len(_PROFILES), size=n, p=shares / shares.sum())
    lo = np.array([p[2][0] for p in _PROFILES])[profile]
    hi = np.array([p[2][1] for p in _PROFILES])[profile]
    rate = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    ticket = np.array([p[3] for p in _PROFILES])[profile] * (1.0 + rng.pareto(_PARETO_ALPHA, size=n))

    first = np.zeros(n, dtype=np.int64)
    last = np.full(n, days, dtype=np.int64)
    # A quarter of the established customers arrive during the window rather than before it.
    late = (profile != 2) & (rng.random(n) < 0.25)
    first[late] = rng.integers(0, max(1, int(days * 0.7)), size=late.sum())
    new = profile == 2
    recent = max(1, min(60, days // 5))
    first[new] = days - rng.integers(1, recent + 1, size=new.sum())
    churned = profile == 3
    stop = (rng.uniform(0.15, 0.6, size=churned.sum()) * days).astype(np.int64)
    last[churned] = np.maximum(first[churned] + 1, stop)
    last[churned] = np.minimum(last[churned], days)
    first = np.minimum(first, last - 1)
    return {"profile": profile, "rate": rate, "ticket": ticket, "first": first, "last": last}


def _purchases(rng: np.random.Generator, cust: dict[str, np.ndarray], start: dt.date, days: int
               ) -> dict[str, np.ndarray]:
    """Sample every purchase: owner, epoch second, amount in cents, quantity, channel, store, category."""
    n_cust = len(cust["rate"])
    cum = np.concatenate([[0.0], np.cumsum(_intensity(start, days))])
    mass = cum[cust["last"]] - cum[cust["first"]]
    counts = np.maximum(1, rng.poisson(cust["rate"] * mass * _DENSITY))
    owner = np.repeat(np.arange(n_cust), counts)
    lo, hi = cum[cust["first"]][owner], cum[cust["last"]][owner]
    day = np.searchsorted(cum, lo + rng.random(len(owner)) * (hi - lo), side="right") - 1
    day = np.clip(day, cust["first"][owner], cust["last"][owner] - 1)
    hour = rng.choice(24, size=len(owner), p=_HOURLY / _HOURLY.sum())
    start_s = int(np.datetime64(start, "s").astype("int64"))
    ts = start_s + day * 86400 + hour * 3600 + rng.integers(0, 3600, size=len(owner))

    profile = cust["profile"][owner]
    cents = np.round(cust["ticket"][owner] * rng.lognormal(0.0, 0.35, size=len(owner)) * 100)
    cents = np.maximum(cents, 50).astype(np.int64)
    cents[rng.random(len(owner)) < _ZERO_AMOUNT_SHARE] = 0
    quantity = 1 + rng.poisson(np.where(profile == 1, 0.1, 0.8))

    # Each customer mostly uses a preferred channel and, in person, a home store.
    weights = np.array([p[5] for p in _PROFILES])
    preferred = (rng.random(n_cust)[:, None] > np.cumsum(weights, axis=1)[cust["profile"]]).sum(axis=1)
    channel = np.where(rng.random(len(owner)) < 0.75, preferred[owner], rng.integers(0, 3, len(owner)))
    home_store = rng.integers(1, 26, size=n_cust)[owner]
    cat_w = np.array([p[6] for p in _PROFILES], float)
    cat_cum = np.cumsum(cat_w / cat_w.sum(axis=1, keepdims=True), axis=1)
    category = (rng.random(len(owner))[:, None] > cat_cum[profile]).sum(axis=1)
    category = np.minimum(category, len(CATEGORIES) - 1)
    return {"owner": owner, "ts": ts, "cents": cents, "quantity": quantity, "channel": channel,
            "store": home_store, "category": category, "profile": profile}


def _returns(rng: np.random.Generator, buys: dict[str, np.ndarray], end_s: int) -> dict[str, np.ndarray]:
    """Returns of earlier purchases: same customer, a few days later, amount never above the purchase."""
    return_p = np.array([p[4] for p in _PROFILES])[buys["profile"]]
    picked = np.flatnonzero((rng.random(len(return_p)) < return_p) & (buys["cents"] > 0))
    delay = ((1.0 + rng.exponential(6.0, size=len(picked))) * 86400).astype(np.int64)
    ts = buys["ts"][picked] + delay
    full = rng.random(len(picked)) < 0.6
    frac = np.where(full, 1.0, rng.uniform(0.2, 0.95, size=len(picked)))
    cents = np.maximum(1, np.floor(buys["cents"][picked] * frac)).astype(np.int64)
    qty = buys["quantity"][picked]
    qty = np.where(full, qty, np.maximum(1, np.floor(qty * frac)).astype(np.int64))
    keep = ts < end_s
    out = {k: v[picked][keep] for k, v in buys.items()}
    out.update(ts=ts[keep], cents=-cents[keep], quantity=-qty[keep])
    return out


def _format_cents(cents: np.ndarray) -> np.ndarray:
    """Integer cents to '12.30' / '-4.05' strings without a per-row Python format call."""
    sign = np.where(cents < 0, "-", "")
    mag = np.abs(cents)
    whole = (mag // 100).astype(str)
    frac = np.strings.zfill((mag % 100).astype(str), 2)
    return np.strings.add(np.strings.add(np.strings.add(sign, whole), "."), frac)


def _spoil(rng: np.random.Generator, df: pd.DataFrame, dirty_fraction: float) -> pd.DataFrame:
    """Spoil a share of the rows: missing customer id, exact duplicates, bad timestamp, bad amount."""
    n_dirty = int(round(dirty_fraction * len(df)))
    if n_dirty == 0:
        return df
    rows = rng.choice(len(df), size=n_dirty, replace=False)
    kind = rng.integers(0, 4, size=n_dirty)
    cols = {c: df.columns.get_loc(c) for c in ("customer_id", "timestamp", "amount")}
    df.iloc[rows[kind == 0], cols["customer_id"]] = None
    bad_ts = rows[kind == 2]
    df.iloc[bad_ts, cols["timestamp"]] = rng.choice(_BAD_TIMESTAMPS, size=len(bad_ts))
    bad_amount = rows[kind == 3]
    df.iloc[bad_amount, cols["amount"]] = rng.choice(_BAD_AMOUNTS, size=len(bad_amount))
    # A duplicate is the same event delivered twice; it lands right after the original.
    repeats = np.ones(len(df), dtype=np.int64)
    repeats[rows[kind == 1]] = 2
    return df.iloc[np.repeat(np.arange(len(df)), repeats)].reset_index(drop=True)


def generate_transactions(customers: int, days: int, seed: int, end: str | dt.date = DEFAULT_END,
                          dirty_fraction: float = 0.01) -> pd.DataFrame:
    """Generate a raw, realistic transaction history (dirty rows included).

    Args:
        customers: number of customers (>= 1); every customer buys at least once.
        days: length of the history in days (>= 1), ending on ``end`` inclusive.
        seed: random seed; the same arguments always give the same rows.
        end: last day of the history (a date or an ISO date string). Fixed by default, never "today".
        dirty_fraction: share of rows spoiled on purpose (0 disables it).

    Returns:
        A DataFrame with the columns in :data:`COLUMNS`, sorted by time. ``timestamp`` (ISO 8601, UTC,
        e.g. ``2025-03-01T10:15:00+00:00``) and ``amount`` (two decimals) are strings because the
        spoiled rows hold values that are not timestamps or numbers.

    Raises:
        ValueError: on a non-positive ``customers``/``days``, a bad ``end`` or a ``dirty_fraction``
            outside [0, 0.5].
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    if not 0.0 <= dirty_fraction <= 0.5:
        raise ValueError("dirty_fraction must be between 0 and 0.5")
    end_date = dt.date.fromisoformat(end) if isinstance(end, str) else end
    start = end_date - dt.timedelta(days=days - 1)
    end_s = int(np.datetime64(end_date + dt.timedelta(days=1), "s").astype("int64"))

    rng = np.random.default_rng(seed)
    cust = _customers(rng, customers, days)
    buys = _purchases(rng, cust, start, days)
    rets = _returns(rng, buys, end_s)
    ev = {k: np.concatenate([buys[k], rets[k]]) for k in buys}
    order = np.lexsort((ev["cents"], ev["owner"], ev["ts"]))
    ev = {k: v[order] for k, v in ev.items()}
    n = len(order)

    width = max(6, len(str(customers)))
    ids = np.strings.add("C", np.strings.zfill(np.arange(1, customers + 1).astype(str), width))
    event_ids = np.strings.add("E", np.strings.zfill(np.arange(1, n + 1).astype(str), 10))
    stamps = np.strings.add(np.datetime_as_string(ev["ts"].astype("datetime64[s]"), unit="s"), "+00:00")
    store = np.where(ev["channel"] == 1,
                     np.strings.add("S", np.strings.zfill(ev["store"].astype(str), 3)),
                     np.where(ev["channel"] == 0, "WEB01", "APP01"))
    df = pd.DataFrame({
        "event_id": pd.array(event_ids, dtype="str"),
        "customer_id": pd.array(ids[ev["owner"]], dtype="str"),
        "timestamp": pd.array(stamps, dtype="str"),
        "amount": pd.array(_format_cents(ev["cents"]), dtype="str"),
        "quantity": ev["quantity"].astype(np.int64),
        "currency": pd.array(np.full(n, "EUR"), dtype="str"),
        "channel": pd.array(CHANNELS[ev["channel"]], dtype="str"),
        "store_id": pd.array(store, dtype="str"),
        "category": pd.array(CATEGORIES[ev["category"]], dtype="str"),
    })
    return _spoil(rng, df, dirty_fraction)
