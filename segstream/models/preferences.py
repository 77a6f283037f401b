"""Product preferences: where each customer's money goes, by category, the same in batch and in the stream.

An event says what it bought in one of two ways:

- ``category``: the whole amount is that category's;
- ``lines``: an order of several categories, ``[{"category": "Chairs", "amount": 731.94}, ...]``. The order
  is still one purchase (one event, one ``amount``); each line's category gets the line's share. The line
  amounts, in cents, must add up to the event's amount exactly, so the split can never disagree with the
  spend the rest of the features count. With ``lines``, ``category`` is not used for preferences.

Per customer the fold keeps one integer: the net cents per category (returns subtract), summed over
events, so the state is the same in any order and a redelivered event (deduped upstream) changes nothing.
From those sums and the bundle's top categories (:class:`PreferenceSpec`, the training data's top N by
spend) come the preference features:

- ``pref_share_<i>``: the share of the customer's categorised spend in the i-th top category; ``<i>`` is the
  category's rank, so feature names stay safe whatever the category is called;
- ``pref_share_other``: the share in every other category;
- ``pref_categories``: how many categories the customer has bought from (net spend above zero);

and the favourite category (largest net spend; ties go to the name that sorts first). Spend is counted
only where it is positive: a category returned in full weighs nothing. A customer without categorised
spend has every share 0 and no favourite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Bumped whenever the preference formula changes (it is part of the feature hash of a bundle that uses them).
PREFERENCE_VERSION = 1
MAX_LINES = 100
MAX_CATEGORY_LENGTH = 128
DEFAULT_TOP_CATEGORIES = 5


class LinesError(ValueError):
    """An event's ``lines`` break the contract; the message says how."""


def _line_cents(amount: object, i: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise LinesError(f"line {i}: 'amount' must be a number")
    if not math.isfinite(amount) or abs(amount) > 1e9:
        raise LinesError(f"line {i}: 'amount' must be a finite number within +/-1e9")
    return int(round(amount * 100))


def parse_lines(lines: object, amount_cents: int) -> tuple[tuple[str, int], ...]:
    """Validate an event's ``lines`` and return (category, cents) per distinct category, in first-seen order.

    Raises:
        LinesError: not a list of 1..MAX_LINES objects with a ``category`` string (1..128 characters) and a
            number ``amount``, or line cents that do not add up to the event's ``amount_cents``.
    """
    if not isinstance(lines, list) or not lines:
        raise LinesError("expected a non-empty array of {category, amount} objects")
    if len(lines) > MAX_LINES:
        raise LinesError(f"at most {MAX_LINES} lines, got {len(lines)}")
    split: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        if not isinstance(line, dict):
            raise LinesError(f"line {i}: expected an object with 'category' and 'amount'")
        category = line.get("category")
        if not isinstance(category, str) or not 0 < len(category) <= MAX_CATEGORY_LENGTH:
            raise LinesError(f"line {i}: 'category' must be a string of 1..{MAX_CATEGORY_LENGTH} characters")
        split[category] = split.get(category, 0) + _line_cents(line.get("amount"), i)
    total = sum(split.values())
    if total != amount_cents:
        raise LinesError(f"the lines add up to {total / 100:.2f}, not the event's amount {amount_cents / 100:.2f}")
    return tuple(split.items())


def event_split(payload: Mapping[str, Any], amount_cents: int) -> tuple[tuple[str, int], ...]:
    """The (category, cents) an already validated event contributes: its lines, else its category, else none."""
    lines = payload.get("lines")
    if lines is not None:
        return parse_lines(lines, amount_cents)
    category = payload.get("category")
    if isinstance(category, str) and category:
        return ((category, amount_cents),)
    return ()


def add_split(totals: dict[str, int], split: Iterable[tuple[str, int]]) -> None:
    """Fold one event's split into a customer's per-category net cents."""
    for category, cents in split:
        totals[category] = totals.get(category, 0) + cents


def top_categories(totals: Iterable[Mapping[str, int]], n: int = DEFAULT_TOP_CATEGORIES) -> tuple[str, ...]:
    """The ``n`` categories with the most positive net spend over all customers (ties: by name)."""
    spend: dict[str, int] = {}
    for customer in totals:
        for category, cents in customer.items():
            if cents > 0:
                spend[category] = spend.get(category, 0) + cents
    ranked = sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(category for category, _ in ranked[:n])


def favourite(totals: Mapping[str, int]) -> str | None:
    """The category with the largest positive net spend (ties: the name that sorts first), or None."""
    best: tuple[int, str] | None = None
    for category, cents in totals.items():
        if cents > 0 and (best is None or cents > best[0] or (cents == best[0] and category < best[1])):
            best = (cents, category)
    return best[1] if best else None


@dataclass(frozen=True)
class PreferenceSpec:
    """The categories a bundle's preference features are about (the training data's top N, in rank order)."""

    categories: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return (*(f"pref_share_{i + 1}" for i in range(len(self.categories))), "pref_share_other",
                "pref_categories")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"version": PREFERENCE_VERSION, "categories": list(self.categories), "names": list(self.names)}

    def describe(self) -> dict[str, str]:
        """Feature name -> what it measures, for reports and change records."""
        out = {f"pref_share_{i + 1}": f"share of spend in {c}" for i, c in enumerate(self.categories)}
        return {**out, "pref_share_other": "share of spend in other categories",
                "pref_categories": "categories bought"}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreferenceSpec:
        return cls(tuple(str(c) for c in data["categories"]))

    def matrix(self, totals: Sequence[Mapping[str, int]]) -> np.ndarray:
        """The preference features of each customer's per-category net cents, shape (n, len(names))."""
        k = len(self.categories)
        index = {c: i for i, c in enumerate(self.categories)}
        out = np.zeros((len(totals), k + 2), dtype=np.float64)
        for row, customer in enumerate(totals):
            # Integer sums first, one division at the end: the same floats from the same integers on both sides.
            top = [0] * k
            total = other = distinct = 0
            for category, cents in customer.items():
                if cents <= 0:
                    continue
                total += cents
                distinct += 1
                at = index.get(category)
                if at is None:
                    other += cents
                else:
                    top[at] += cents
            if total:
                for i in range(k):
                    out[row, i] = top[i] / total
                out[row, k] = other / total
            out[row, k + 1] = distinct
        return out


def batch_categories(events: Any, as_of_ms: int | None = None) -> dict[str, dict[str, int]]:
    """Per customer, net cents per category over clean events (a pandas frame) up to ``as_of_ms``.

    Reads ``lines`` (JSON text or lists) where the frame has it and the row holds one, else ``category``;
    rows with neither contribute nothing. The same split per event as the stream's fold.
    """
    import json

    import pandas as pd

    if "lines" not in events.columns and "category" not in events.columns:
        return {}
    frame = events
    if as_of_ms is not None:
        ts = pd.to_datetime(frame["timestamp"], utc=True)
        stamp = pd.Timestamp(as_of_ms, unit="ms", tz="UTC")
        frame = frame.loc[(ts <= stamp).to_numpy()]
    customers = frame["customer_id"].astype(str).to_numpy()
    cents = np.rint(frame["amount"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    lines = frame["lines"].to_numpy(dtype=object) if "lines" in frame.columns else None
    categories = frame["category"].to_numpy(dtype=object) if "category" in frame.columns else None
    out: dict[str, dict[str, int]] = {}
    for i in range(len(frame)):
        payload: dict[str, Any] = {}
        if lines is not None and isinstance(lines[i], str) and lines[i]:
            payload["lines"] = json.loads(lines[i])
        elif lines is not None and isinstance(lines[i], list):
            payload["lines"] = lines[i]
        elif categories is not None and isinstance(categories[i], str):
            payload["category"] = categories[i]
        split = event_split(payload, int(cents[i]))
        if split:
            add_split(out.setdefault(customers[i], {}), split)
    return out


def preference_summary(totals: Mapping[str, int], limit: int = 10) -> dict[str, Any]:
    """A customer's preferences for people: favourite, how many categories, spend and share per category.

    ``spend`` and ``share`` list at most ``limit`` categories, largest net spend first (ties: by name);
    shares are of the positive categorised spend, as in the features.
    """
    positive = {c: v for c, v in totals.items() if v > 0}
    total = sum(positive.values())
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return {
        "favourite_category": favourite(totals),
        "categories_bought": len(positive),
        "spend": {c: v / 100 for c, v in ranked},
        "share": {c: (positive.get(c, 0) / total if total else 0.0) for c, _ in ranked},
    }
