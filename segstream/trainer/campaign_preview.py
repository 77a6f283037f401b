"""``segstream campaigns preview``: how many customers a campaign would reach, before switching it on.

The history is played in event-time order through the same code the stream runs: events folded into
:class:`~segstream.models.customer_state.CustomerState` in batches of ``batch_size`` (the worker's batch
size), every touched customer scored as of the batch's watermark with the bundle, hysteresis from
:func:`segstream.models.changes.advance`, change ids from :func:`segstream.models.changes.change_id`, and
the rules from :func:`segstream.models.campaigns.decide`. On an in-order replay the stream makes the same
changes where its batches hold the same events; its batches form by time as well as size, so a customer
whose events fall in different batches can see one evaluation more or less (see the test for how close).
The inactivity sweep is played too, after every batch: a customer whose last evaluation is
``inactivity_threshold_days`` of event time behind the watermark is re-scored as of the watermark with
``cause = "inactivity"`` (how customers become At risk or Lost with no new event). The worker sweeps on a
wall-clock timer, so on a fast replay it sweeps less often than after every batch; the preview shows
what a live stream, sweeping as time passes, would fire.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segstream.models.campaigns import CampaignState, ResolvedCampaign, decide
from segstream.models.changes import advance, change_id, flap_rate
from segstream.models.customer_state import CustomerState, aggregates_matrix
from segstream.models.features import DAY_MS, FEATURE_NAMES, features_from_aggregates
from segstream.models.serving import ServingModels


@dataclass
class PreviewResult:
    """What the rules would have done over the history."""

    events: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)

    def summary(self, campaigns: list[ResolvedCampaign], sample: int = 5) -> dict[str, Any]:
        """Per campaign: triggers, unique customers, triggers per ISO week, what was suppressed, a sample."""
        count, flaps = flap_rate(self.changes)
        out: dict[str, Any] = {
            "events": self.events,
            "changes": len(self.changes),
            "changes_per_1000_events": 1000.0 * count / self.events if self.events else None,
            "flap_rate": flaps,
            # first evaluations (no previous segment) are changes too; moves are the rest
            "moves_per_1000_events": (1000.0 * sum(1 for c in self.changes if c["previous_segment"] is not None)
                                      / self.events) if self.events else None,
            "changes_by_cause": dict(Counter(c["cause"] for c in self.changes)),
            "campaigns": {},
        }
        by_campaign: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for t in self.triggers:
            by_campaign[t["campaign"]].append(t)
        for rc in campaigns:
            name = rc.campaign.name
            fired = by_campaign.get(name, [])
            weeks = Counter(pd.Timestamp(t["event_time_ms"], unit="ms", tz="UTC").strftime("%G-W%V") for t in fired)
            out["campaigns"][name] = {
                "trigger": rc.campaign.kind,
                "triggers": len(fired),
                "customers": len({t["customer_id"] for t in fired}),
                "suppressed": {why: n for (c, why), n in sorted(self.suppressed.items()) if c == name},
                "per_week": dict(sorted(weeks.items())),
                "sample": fired[:sample],
            }
        return out


@dataclass
class _Context:
    serving: ServingModels
    model_version: str
    campaigns: list[ResolvedCampaign]
    hold: int
    recheck_ms: int
    states: dict[str, CustomerState]
    result: PreviewResult
    dwell_ms: int = 0
    records: dict[str, tuple[int | None, int | None, int, int]] = field(default_factory=dict)
    campaign_state: CampaignState = field(default_factory=CampaignState)
    schedule: list[tuple[int, str]] = field(default_factory=list)  # heap of (next check ms, customer)
    next_check: dict[str, int] = field(default_factory=dict)


def _due(ctx: _Context, watermark: int) -> list[str]:
    """Customers whose next inactivity check is at or before the watermark (stale heap entries skipped)."""
    due = []
    while ctx.schedule and ctx.schedule[0][0] <= watermark:
        at, cid = heapq.heappop(ctx.schedule)
        if ctx.next_check.get(cid) == at:
            due.append(cid)
    return sorted(set(due))


def _evaluate(touched: list[str], cause: str, triggers: dict[str, tuple[str | None, int]], bases: dict[str, str],
              ctx: _Context, watermark: int) -> None:  # fmt: skip
    """Score ``touched`` as of the watermark, apply hysteresis, record changes and the rules' decisions."""
    names, about, result = ctx.serving.names, ctx.serving.segment_descriptions, ctx.result
    rows = aggregates_matrix([ctx.states[c].aggregates(watermark) for c in touched])
    x = features_from_aggregates(rows, watermark)
    predicted = np.asarray(ctx.serving.predict_segments(x), dtype=np.int64).tolist()
    for row, cid in enumerate(touched):
        seg, pending, count, since = ctx.records.get(cid, (None, None, 0, 0))
        new_seg, pending, count, since, changed = advance(seg, pending, count, predicted[row], ctx.hold,
                                                          pending_since_ms=since, now_ms=watermark,
                                                          dwell_ms=ctx.dwell_ms)  # fmt: skip
        ctx.records[cid] = (new_seg, pending, count, since)
        check = watermark + ctx.recheck_ms
        if ctx.dwell_ms and pending is not None:
            check = min(check, since + ctx.dwell_ms)  # look again when the dwell ends, as the worker does
        ctx.next_check[cid] = check
        heapq.heappush(ctx.schedule, (check, cid))
        if not changed:
            continue
        event_id, event_time = triggers[cid]
        features = dict(zip(FEATURE_NAMES, x[row].tolist(), strict=True))
        the_id = change_id(cid, seg, int(new_seg), ctx.model_version, cause, bases[cid])  # type: ignore[arg-type]
        change = {
            "change_id": the_id, "customer_id": cid, "previous_segment": seg, "segment": new_seg,
            "previous_segment_name": None if seg is None else names.get(seg), "segment_name": names.get(new_seg),
            "segment_description": about.get(new_seg), "cause": cause, "event_id": event_id,
            "event_time_ms": event_time,
        }  # fmt: skip
        result.changes.append(change)
        decisions = decide(ctx.campaigns, customer_id=cid, previous=seg, segment=int(new_seg),  # type: ignore[arg-type]
                           event_time_ms=event_time, features=features, change_id=the_id,
                           state=ctx.campaign_state)  # fmt: skip
        for d in decisions:
            if d.fire:
                result.triggers.append({"trigger_id": d.trigger_id, "campaign": d.campaign, **change,
                                        "features": features})  # fmt: skip
            else:
                result.suppressed[(d.campaign, d.why)] += 1


def preview(
    events: pd.DataFrame,
    serving: ServingModels,
    model_version: str,
    campaigns: list[ResolvedCampaign],
    *,
    batch_size: int = 100,
    hold: int = 1,
    inactivity_threshold_days: float = 90.0,
    dwell_days: float = 0.0,
) -> PreviewResult:
    """Play clean events through scoring, hysteresis and the rules (see the module docstring)."""
    order = np.argsort(pd.to_datetime(events["timestamp"], utc=True).to_numpy(), kind="stable")
    ts = (pd.to_datetime(events["timestamp"], utc=True).astype("datetime64[ms, UTC]").astype(np.int64)).to_numpy()
    cents = np.rint(events["amount"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    ids = events["event_id"].astype(str).to_numpy()
    customers = events["customer_id"].astype(str).to_numpy()
    states: dict[str, CustomerState] = {}
    result = PreviewResult(events=len(events))
    ctx = _Context(serving, model_version, campaigns, hold, int(inactivity_threshold_days * DAY_MS), states, result,
                   dwell_ms=int(dwell_days * DAY_MS))  # fmt: skip
    watermark = 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        latest: dict[str, tuple[str, int]] = {}
        bases: dict[str, str] = {}
        for i in chunk:
            cid = customers[i]
            if not states.setdefault(cid, CustomerState()).add(ids[i], int(ts[i]), int(cents[i])):
                continue  # a duplicate event id changes nothing, as in the stream
            bases.setdefault(cid, ids[i])
            best = latest.get(cid)
            if best is None or ts[i] > best[1] or (ts[i] == best[1] and ids[i] > best[0]):
                latest[cid] = (ids[i], int(ts[i]))
        if latest:
            watermark = max(watermark, max(t for _, t in latest.values()))
            _evaluate(list(latest), "purchase", dict(latest), bases, ctx, watermark)
        due = _due(ctx, watermark)
        if due:
            basis = f"as_of:{watermark}"
            _evaluate(due, "inactivity", {c: (None, watermark) for c in due}, dict.fromkeys(due, basis), ctx, watermark)
    return result
