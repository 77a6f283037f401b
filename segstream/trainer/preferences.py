"""Product preferences in training: pick the top categories, build the feature columns, describe segments.

The per-event split and the formulas live in :mod:`segstream.models.preferences` (shared with the stream);
this module fits the :class:`~segstream.models.preferences.PreferenceSpec` (the training data's top N
categories by positive net spend) and turns its features into what the report and the segment
descriptions say ("most spend in Chairs (41%), Binders (18%)").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from segstream.models.preferences import PreferenceSpec, batch_categories, favourite, top_categories
from segstream.trainer.errors import TrainerError


def preference_frame(spec: PreferenceSpec, totals: Mapping[str, Mapping[str, int]], customers: pd.Index
                     ) -> pd.DataFrame:  # fmt: skip
    """The preference features of ``customers`` (a customer with no categorised spend: all zero)."""
    index = pd.Index(customers, name="customer_id").astype(str)
    matrix = spec.matrix([totals.get(c, {}) for c in index])
    return pd.DataFrame(matrix, index=index, columns=list(spec.names))


def fit_preferences(events: pd.DataFrame, customers: pd.Index, top: int) -> tuple[PreferenceSpec, pd.DataFrame]:
    """The spec over the training events' top ``top`` categories and every customer's features.

    Raises:
        TrainerError: no event names a category (no ``category`` or ``lines`` column, or all empty).
    """
    totals = batch_categories(events)
    if not totals:
        raise TrainerError("--preferences: no event has a category or order lines (a 'category' or 'lines' "
                           "column), so there are no preferences to learn")  # fmt: skip
    spec = PreferenceSpec(top_categories(totals.values(), top))
    return spec, preference_frame(spec, totals, customers)


def favourites(events: pd.DataFrame) -> pd.Series:
    """Each customer's favourite category (largest net spend), for tables people read."""
    return pd.Series({c: favourite(t) for c, t in batch_categories(events).items()}, name="favourite_category",
                     dtype=object)  # fmt: skip


def preference_profiles(spec: PreferenceSpec, frame: pd.DataFrame, labels: pd.Series) -> dict[int, dict]:
    """Per segment: the mean share of spend in each top category and in the rest, and the median number of
    categories bought."""
    out: dict[int, dict] = {}
    aligned = labels.reindex(frame.index)
    for segment in sorted(aligned.dropna().unique()):
        members = frame.loc[(aligned == segment).to_numpy()]
        shares = {c: float(members[f"pref_share_{i + 1}"].mean()) for i, c in enumerate(spec.categories)}
        shares["other"] = float(members["pref_share_other"].mean())
        out[int(segment)] = {"share": shares, "categories_bought": float(np.median(members["pref_categories"]))}
    return out


def describe_preferences(profile: Mapping[str, object], shown: int = 2) -> str:
    """``most spend in Chairs (41%), Binders (18%); 3 categories`` from one segment's profile."""
    shares = dict(profile["share"])  # type: ignore[call-overload]
    ranked = sorted(((v, c) for c, v in shares.items() if c != "other" and v > 0), reverse=True)[:shown]
    if not ranked:
        return "no categorised spend"
    top = ", ".join(f"{c} ({v:.0%})" for v, c in ranked)
    return f"most spend in {top}; typically {profile['categories_bought']:g} categories"


# A segment is named after a category only when the category takes at least this share of its members'
# spend on average: "mostly" has to be true.
DOMINANT_SHARE = 0.4


def dominant_category(profile: Mapping[str, object]) -> str | None:
    """The top category that takes at least DOMINANT_SHARE of a segment's spend, if one does."""
    shares = {c: v for c, v in dict(profile["share"]).items() if c != "other"}  # type: ignore[call-overload]
    if not shares:
        return None
    category, share = max(shares.items(), key=lambda kv: (kv[1], kv[0]))
    return category if share >= DOMINANT_SHARE else None


def with_category(names: Mapping[int, str], dominant: Mapping[int, str]) -> dict[int, str]:
    """Segment names with ", mostly <category>" where a category dominates the segment's spend.

    The behaviour namer numbers repeated names ("Lapsing frequent buyers 2"); where the category tells two
    such segments apart the number goes, and names stay unique either way.
    """
    out: dict[int, str] = {}
    for segment, name in names.items():
        category = dominant.get(segment)
        if category is None:
            out[segment] = name
            continue
        stem = name.rsplit(" ", 1)[0] if name.rsplit(" ", 1)[-1].isdigit() else name
        out[segment] = f"{stem}, mostly {category}"
    seen: dict[str, int] = {}
    for segment in sorted(out):
        name = out[segment]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[segment] = f"{name} {seen[name]}"
    return out
