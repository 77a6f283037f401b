"""Segment names that tell the truth, one-line descriptions, and segment ids that stay stable across retrains.

Names: each segment's profile (the medians of its members) is placed in the population by percentile rank
per feature (0 = lowest customer, 1 = highest). A marketing name is only *eligible* for a segment that
really is what the name says against this population (:data:`_ELIGIBLE`): Champions are recent, frequent
and high-spend; Loyal buy often and have not lapsed; a segment of lapsed one-time buyers can never be
Champions or Loyal, however few segments there are. Among the eligible names, a score in [0, 1] built from
the ranks (:data:`_SCORES`) decides: Champions goes first to the eligible segment with the best Champions
score, then the Hungarian algorithm assigns the other names one per segment maximising the total score
(ties broken by the fixed order of :data:`SEGMENT_NAMES` and of the segments). A segment no
name fits gets a plain descriptive name from its recency and frequency ("Lapsed one-time buyers"), which
beats a flattering one.

Descriptions: one line from the profile in words a marketer reads ("typically bought 3 times, last
purchase 12 days ago, spends 4.1x the median customer").

Ids: a retrain must not renumber segments that did not change. New and previous centroids are compared
in one space that does not depend on either model's PCA or K-Means: the original-unit centroids, put
through the fixed signed log1p and then standardised with the NEW scaler (so every feature counts in
units of its current spread). The Hungarian algorithm matches new to old centroids by Euclidean
distance; a matched new segment keeps the old id when its RMS distance per feature is at most
``max_match_distance`` (default 1.0, i.e. a standard deviation); any other new segment gets a fresh id
above every id used before. Without a previous model, ids count from 0 in order of decreasing centroid
``monetary``, so they do not depend on K-Means' arbitrary label order either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from segstream.models.attributes import CATEGORICAL, NUMERIC, OTHER, AttributeSpec
from segstream.models.scoring import signed_log1p

Ranks = Mapping[str, float]

# name -> score from percentile ranks r (recency: high rank = long since last purchase).
_SCORES: dict[str, Callable[[Ranks], float]] = {
    "Champions": lambda r: (3 * (1 - r["recency_days"]) + 2 * r["frequency"] + 2 * r["monetary"]) / 7,
    "Loyal": lambda r: (r["frequency"] + r["tenure_days"] + (1 - r["recency_days"])) / 3 - 0.05,
    "Big spenders": lambda r: (2 * r["aov"] + r["monetary"]) / 3,
    "New": lambda r: ((1 - r["tenure_days"]) * 2 + (1 - r["recency_days"])) / 3,
    "At risk": lambda r: (2 * r["recency_days"] + r["monetary"] + r["frequency"]) / 4,
    "Lost": lambda r: (2 * r["recency_days"] + (1 - r["monetary"]) + (1 - r["frequency"])) / 4 - 0.05,
    "Low value": lambda r: ((1 - r["monetary"]) + (1 - r["frequency"]) + (1 - r["aov"])) / 3,
}
# name -> when a segment may carry it: ranks r, and the profile's median purchases f.
_ELIGIBLE: dict[str, Callable[[Ranks, float], bool]] = {
    "Champions": lambda r, f: r["recency_days"] <= 0.4 and r["frequency"] >= 0.6 and r["monetary"] >= 0.6 and f >= 2,
    "Loyal": lambda r, f: r["frequency"] >= 0.5 and r["recency_days"] <= 0.7 and f >= 2,
    "Big spenders": lambda r, f: r["aov"] >= 0.8 and r["monetary"] >= 0.6 and f >= 2,
    "New": lambda r, f: r["tenure_days"] <= 0.3 and r["recency_days"] <= 0.5,
    "At risk": lambda r, f: r["recency_days"] >= 0.65 and f >= 2 and (r["frequency"] >= 0.6 or r["monetary"] >= 0.6),
    "Lost": lambda r, f: r["recency_days"] >= 0.6 and r["frequency"] <= 0.55 and r["monetary"] <= 0.6,
    "Low value": lambda r, f: r["monetary"] <= 0.35,
}
SEGMENT_NAMES: tuple[str, ...] = tuple(_SCORES)
NAMING_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "monetary", "aov", "tenure_days")
_INFEASIBLE = -1e6
_DESCRIPTIVE_SCORE = -1.0  # below every eligible marketing name


def percentile_ranks(centroids: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """Mid-rank of each centroid value among the population's values of the same feature, in [0, 1]."""
    out = pd.DataFrame(index=centroids.index, columns=centroids.columns, dtype=np.float64)
    for col in centroids.columns:
        pop = np.sort(population[col].to_numpy(dtype=np.float64))
        vals = centroids[col].to_numpy(dtype=np.float64)
        below = np.searchsorted(pop, vals, side="left")
        upto = np.searchsorted(pop, vals, side="right")
        out[col] = (below + upto) / 2.0 / max(len(pop), 1)
    return out


def name_scores(profiles: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """Score of every candidate name (columns) for every segment (rows); ineligible names are NaN."""
    missing = [f for f in NAMING_FEATURES if f not in profiles.columns]
    if missing:
        raise ValueError(f"naming needs profile columns {missing}")
    ranks = percentile_ranks(profiles[list(NAMING_FEATURES)], population)
    rows = []
    for i in ranks.index:
        r, f = ranks.loc[i], float(profiles.loc[i, "frequency"])
        rows.append([_SCORES[n](r) if _ELIGIBLE[n](r, f) else np.nan for n in SEGMENT_NAMES])
    return pd.DataFrame(rows, index=profiles.index, columns=list(SEGMENT_NAMES))


def descriptive_name(profile: Mapping[str, float], population: pd.DataFrame) -> str:
    """A plain name from recency and purchases: "Recent repeat buyers", "Lapsed one-time buyers"."""
    rec = float(profile["recency_days"])
    q1, q2 = np.quantile(population["recency_days"].to_numpy(dtype=np.float64), [1 / 3, 2 / 3])
    when = "Recent" if rec <= q1 else ("Lapsing" if rec <= q2 else "Lapsed")
    freq = float(profile["frequency"])
    how = "one-time" if freq < 1.5 else ("repeat" if freq < 4.5 else "frequent")
    return f"{when} {how} buyers"


def _spend_word(profile: Mapping[str, float], population: pd.DataFrame) -> str:
    rank = percentile_ranks(pd.DataFrame([{"monetary": profile["monetary"]}]), population[["monetary"]]).iloc[0, 0]
    return "high spend" if rank >= 2 / 3 else ("low spend" if rank < 1 / 3 else "mid spend")


def _still_true(name: str, scores: np.ndarray, profile: Mapping[str, float], population: pd.DataFrame) -> bool:
    """Whether a previous bundle's name still describes this segment (so a retrain need not rename it)."""
    if name in SEGMENT_NAMES:
        return bool(np.isfinite(scores[SEGMENT_NAMES.index(name)]))
    plain = descriptive_name(profile, population)
    return name == plain or name.startswith(f"{plain} (") or name.startswith(f"{plain} ")


def name_segments(
    profiles: pd.DataFrame, population: pd.DataFrame, previous: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Unique, truthful names for segments (rows indexed by segment id: member medians, original units).

    Args:
        profiles: One row per segment with at least the :data:`NAMING_FEATURES` columns.
        population: The customers' features (same columns), for the percentile ranks.
        previous: The previous bundle's names by segment id: a segment that kept its id keeps its name
            while the name is still true for it (eligible marketing name, or the same plain description).

    Returns:
        Segment id -> name; all names distinct.
    """
    ordered = profiles.sort_index()
    scores = name_scores(ordered, population).to_numpy()
    names: dict[int, str] = {}
    free = list(range(len(ordered)))
    for r, seg in enumerate(ordered.index):
        old = (previous or {}).get(int(seg))
        if old and old not in names.values() and _still_true(old, scores[r], ordered.iloc[r], population):
            names[int(seg)] = old
            free.remove(r)
    open_names = [i for i, n in enumerate(SEGMENT_NAMES) if n not in names.values()]
    # Champions first: the most demanding name goes to the most Champion-like eligible segment, so a
    # looser name it also meets (Big spenders) cannot push it onto a lesser segment.
    if 0 in open_names and free and np.isfinite(scores[free, 0]).any():
        best = free[int(np.nanargmax(scores[free, 0]))]
        names[int(ordered.index[best])] = SEGMENT_NAMES[0]
        free.remove(best)
        open_names.remove(0)
    rest = scores[np.ix_(free, open_names)] if free and open_names else np.empty((len(free), 0))
    rest = np.where(np.isnan(rest), _INFEASIBLE, rest)
    # One private descriptive column per segment, so every assignment is feasible.
    own = np.full((len(free), len(free)), _INFEASIBLE)
    np.fill_diagonal(own, _DESCRIPTIVE_SCORE)
    rows, cols = linear_sum_assignment(np.hstack([rest, own]), maximize=True) if free else ([], [])
    fallback: list[int] = []
    for r, c in zip(rows, cols, strict=True):
        if c < len(open_names):
            names[int(ordered.index[free[r]])] = SEGMENT_NAMES[open_names[c]]
        else:
            fallback.append(free[r])
    taken = set(names.values())
    for r in fallback:
        profile = ordered.iloc[r]
        name = descriptive_name(profile, population)
        if name in taken:
            name = f"{name} ({_spend_word(profile, population)})"
        base, count = name, 1
        while name in taken:
            count += 1
            name = f"{base} {count}"
        taken.add(name)
        names[int(ordered.index[r])] = name
    return names


# Names that promise a customer will come back; they must have been true in held-out time.
PROMISING_NAMES: tuple[str, ...] = ("Champions", "Loyal", "Big spenders")


def demote_unproven(
    names: Mapping[int, str],
    repeat_rate: Mapping[int, float],
    population_rate: float,
    profiles: pd.DataFrame,
    population: pd.DataFrame,
) -> tuple[dict[int, str], list[str]]:
    """Replace a promising name whose segment did not out-repeat the population in held-out time.

    Args:
        names: Segment id -> name.
        repeat_rate: Segment id -> share of its customers (scored at an earlier cutoff) who bought again
            in the period after it.
        population_rate: The same share over all those customers.
        profiles, population: As for :func:`name_segments` (for the descriptive replacement).

    Returns:
        The names, and one sentence per demotion.
    """
    out = dict(names)
    notes: list[str] = []
    for seg, name in sorted(names.items()):
        rate = repeat_rate.get(seg)
        # A product-preference suffix (", mostly Chairs") is a separate claim and stays.
        stem, sep, tail = name.partition(", mostly ")
        if stem in PROMISING_NAMES and rate is not None and rate < population_rate:
            new = descriptive_name(profiles.loc[seg], population) + sep + tail
            base, count = new, 1
            while new in out.values():
                count += 1
                new = f"{base} {count}"
            out[seg] = new
            notes.append(
                f"segment {seg} is not called {name}: {rate:.1%} of it bought again in the held-out period, "
                f"below the population's {population_rate:.1%}"
            )
    return out, notes


def _days(value: float) -> str:
    days = max(float(value), 0.0)
    if days < 1.5:
        return "within a day"
    if days < 60:
        return f"{days:.0f} days ago"
    if days < 730:
        return f"{days / 30.44:.0f} months ago"
    return f"{days / 365.25:.1f} years ago"


def describe_segment(profile: Mapping[str, float], population: pd.DataFrame) -> str:
    """One line a marketer reads, from a segment's profile (member medians) against the population."""
    freq = float(profile["frequency"])
    bought = "bought once" if freq < 1.5 else f"typically bought {freq:.0f} times"
    median_spend = float(np.median(population["monetary"].to_numpy(dtype=np.float64)))
    spend = float(profile["monetary"])
    if median_spend > 0:
        ratio = spend / median_spend
        spends = f"spends {ratio:.1f}x the median customer" if ratio >= 0.1 else "spends almost nothing"
    else:
        spends = f"spends {spend:,.0f}"
    return f"{bought}, last purchase {_days(profile['recency_days'])}, {spends}"


def describe_segments(profiles: pd.DataFrame, population: pd.DataFrame) -> dict[int, str]:
    """Segment id -> :func:`describe_segment`."""
    return {int(i): describe_segment(profiles.loc[i], population) for i in profiles.index}


def comparable(centroids: pd.DataFrame, scaler_mean: np.ndarray, scaler_scale: np.ndarray) -> np.ndarray:
    """Centroids in the retrain-comparable space: signed log1p, then standardised by the given scaler."""
    return (signed_log1p(centroids.to_numpy(dtype=np.float64)) - scaler_mean) / scaler_scale


def initial_ids(centroids: pd.DataFrame, order_by: str = "monetary") -> dict[int, int]:
    """Label -> id for a first model: ids 0.. by decreasing centroid ``order_by`` (default monetary; ties:
    by label)."""
    order = sorted(centroids.index, key=lambda lab: (-float(centroids.loc[lab, order_by]), lab))
    return {int(lab): i for i, lab in enumerate(order)}


def match_ids(
    new: np.ndarray,
    new_labels: Sequence[int],
    old: np.ndarray,
    old_ids: Sequence[int],
    order_key: Sequence[float],
    max_match_distance: float = 1.0,
    used_ids: Sequence[int] = (),
) -> dict[int, int]:
    """Give each new label the id of its Hungarian-matched old centroid, or a fresh id.

    Args:
        new: New centroids in the comparable space, one row per entry of ``new_labels``.
        new_labels: K-Means labels of the new centroids.
        old: Previous centroids in the same space, one row per entry of ``old_ids``.
        old_ids: Previous segment ids.
        order_key: One number per new label; unmatched labels get fresh ids in increasing key order.
        max_match_distance: Largest RMS distance per feature at which a match keeps the old id.
        used_ids: Ids used in earlier models too, never reused for a fresh segment.

    Returns:
        New label -> segment id (ids unique).
    """
    mapping: dict[int, int] = {}
    if len(old) and len(new):
        cost = np.sqrt(((new[:, None, :] - old[None, :, :]) ** 2).mean(axis=2))
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= max_match_distance:
                mapping[int(new_labels[r])] = int(old_ids[c])
    next_id = max([*old_ids, *used_ids], default=-1) + 1
    unmatched = [i for i, lab in enumerate(new_labels) if int(lab) not in mapping]
    for i in sorted(unmatched, key=lambda i: (order_key[i], int(new_labels[i]))):
        mapping[int(new_labels[i])] = next_id
        next_id += 1
    return mapping


# --- Names and descriptions from customer attributes -------------------------------------------------
#
# A segment found on customer attributes (a profile-only model has no recency or frequency) is named by
# its most distinctive traits: a numeric attribute counts as "High <name>" when the segment's median sits
# in the top third of customers (percentile rank >= 2/3) and "Low <name>" in the bottom third (<= 1/3);
# a categorical one as "<name>=<level>" when at least 75% of the segment has that level and the share is at
# least 20 points above the population's. The name is the two strongest traits (distance of the rank from
# the middle; for a level, the share above the population's, capped at 0.5), e.g. "High income, low share";
# a segment with no trait is "Average profile". Colliding names take their next trait, then a number. So
# every word of a name is true of the segment's median (or majority) member.

HIGH_RANK, LOW_RANK = 2 / 3, 1 / 3
LEVEL_SHARE, LEVEL_LIFT = 0.75, 0.20
AVERAGE_NAME = "Average profile"


def attribute_profiles(spec: AttributeSpec, encoded: pd.DataFrame, ids: pd.Series) -> dict[int, dict[str, Any]]:
    """Per segment: numeric medians with their percentile rank, and each categorical attribute's top level.

    Args:
        spec: The attribute spec.
        encoded: Encoded attributes of the segmented customers (columns ``spec.columns``).
        ids: Segment id per customer (same index).

    Returns:
        ``{segment: {"numeric": {name: {"median", "rank"}}, "categorical": {name: {"level", "share",
        "overall"}}}}`` (JSON-ready).
    """
    seg = ids.reindex(encoded.index).to_numpy()
    numeric = [a.name for a in spec.attributes if a.kind == NUMERIC]
    medians = encoded[numeric].groupby(seg).median() if numeric else pd.DataFrame(index=np.unique(seg))
    ranks = percentile_ranks(medians, encoded[numeric]) if numeric else medians
    shares = encoded.groupby(seg).mean()
    overall = encoded.mean()
    out: dict[int, dict[str, Any]] = {}
    for s in sorted(int(v) for v in np.unique(seg)):
        num = {n: {"median": float(medians.loc[s, n]), "rank": float(ranks.loc[s, n])} for n in numeric}
        cat: dict[str, dict[str, Any]] = {}
        for attr in spec.attributes:
            if attr.kind != CATEGORICAL:
                continue
            cols = list(attr.columns)
            top = max(cols, key=lambda c: (float(shares.loc[s, c]), -cols.index(c)))
            cat[attr.name] = {"level": top.split("=", 1)[1], "share": float(shares.loc[s, top]),
                              "overall": float(overall[top])}  # fmt: skip
        out[s] = {"numeric": num, "categorical": cat}
    return out


def attribute_traits(profile: Mapping[str, Any], order: Sequence[str]) -> list[str]:
    """The true traits of one segment profile, strongest first (ties: in ``order`` of the attributes)."""
    found: list[tuple[float, int, str]] = []
    for name, stats in profile.get("numeric", {}).items():
        r = float(stats["rank"])
        if r >= HIGH_RANK:
            found.append((r - 0.5, order.index(name), f"high {name}"))
        elif r <= LOW_RANK:
            found.append((0.5 - r, order.index(name), f"low {name}"))
    for name, stats in profile.get("categorical", {}).items():
        lift = float(stats["share"]) - float(stats["overall"])
        if stats["level"] != OTHER and stats["share"] >= LEVEL_SHARE and lift >= LEVEL_LIFT:
            found.append((min(lift, 0.5), order.index(name), f"{name}={stats['level']}"))
    return [text for _, _, text in sorted(found, key=lambda t: (-t[0], t[1]))]


def _title(traits: Sequence[str]) -> str:
    text = ", ".join(traits)
    return text[:1].upper() + text[1:] if text else AVERAGE_NAME


def name_attribute_segments(profiles: Mapping[int, Mapping[str, Any]], order: Sequence[str]) -> dict[int, str]:
    """Unique, truthful names from :func:`attribute_profiles` (see the block comment above)."""
    traits = {s: attribute_traits(p, list(order)) for s, p in profiles.items()}
    depth = {s: 2 for s in profiles}
    names = {s: _title(traits[s][: depth[s]]) for s in profiles}
    for _ in range(len(order)):
        clashes = [s for s in names if list(names.values()).count(names[s]) > 1]
        grow = [s for s in clashes if len(traits[s]) > depth[s]]
        if not grow:
            break
        for s in grow:
            depth[s] += 1
            names[s] = _title(traits[s][: depth[s]])
    clashes = [s for s in names if list(names.values()).count(names[s]) > 1]
    for s in clashes:
        names[s] += _where_suffix(profiles[s], traits[s], order)
    taken: set[str] = set()
    for s in sorted(names):
        base, count = names[s], 1
        while names[s] in taken:
            count += 1
            names[s] = f"{base} {count}"
        taken.add(names[s])
    return names


def _where_suffix(profile: Mapping[str, Any], traits: Sequence[str], order: Sequence[str]) -> str:
    """Tells apart segments whose traits read the same: the percentile of the first trait's attribute
    ("High income (p99)" / "High income (p85)"), or of the first numeric attribute ("(income p53)")."""
    numeric = profile.get("numeric", {})
    first = traits[0].split(" ", 1) if traits else []
    if len(first) == 2 and first[0] in ("high", "low") and first[1] in numeric:
        return f" (p{100 * float(numeric[first[1]]['rank']):.0f})"
    for name in order:
        if name in numeric:
            return f" ({name} p{100 * float(numeric[name]['rank']):.0f})"
    return ""


def _where(rank: float) -> str:
    return f"p{min(max(100 * rank, 0.0), 100.0):.0f}"


def describe_attributes(profile: Mapping[str, Any]) -> str:
    """One line: every numeric median with its percentile among all customers (``p84``: above 84% of
    them), then each categorical attribute's most common level with its share (and the population's)."""
    parts = [f"{name} {stats['median']:.3g} ({_where(float(stats['rank']))})"
             for name, stats in profile.get("numeric", {}).items()]  # fmt: skip
    parts += [f"{name}={stats['level']} {stats['share']:.0%} (all customers {stats['overall']:.0%})"
              for name, stats in profile.get("categorical", {}).items()]  # fmt: skip
    return ("median " if profile.get("numeric") else "") + ", ".join(parts)
