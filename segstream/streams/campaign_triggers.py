"""Campaign triggers in the stream: the rules file, watched and reloaded, and the decision for a batch.

The rules (:mod:`segstream.models.campaigns`) are evaluated on every segment change a batch or a sweep
makes. The cooldown and cap state they read comes from the store (plus the decisions of batches still
finalizing), and what they decide goes into the batch's :class:`~segstream.streams.state.base.Finalization`,
so it is written in the same atomic step as the segment records. A crash between sending and finalizing
re-emits the change and its triggers with the same ``change_id`` and ``trigger_id`` (the state they were
decided from was not written), so a consumer that dedupes on ``trigger_id`` fires each campaign once.

The file is checked for changes at most every ``check_every_s``; a new version is parsed and resolved
against the active bundle's segment names first, and only a valid one replaces the rules in use (a bad one
is logged once with its line and field, and the worker keeps the rules it has).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segstream.models.campaigns import (
    CampaignRules,
    CampaignState,
    ResolvedCampaign,
    RulesError,
    decide,
    load_rules,
    resolve,
)
from segstream.models.features import DAY_MS
from segstream.streams.bundle_watch import ActiveModel
from segstream.streams.outputs import change_fields, dumps, now_iso
from segstream.streams.state.base import SegmentChange, StateStore

log = logging.getLogger("segstream.worker")


class RulesWatcher:
    """The campaign rules in use, reloaded without a restart when the file changes."""

    def __init__(self, path: Path | None, check_every_s: float = 2.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.path = Path(path) if path else None
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked_at = -1e18
        self._stamp: tuple[float, int] | None = None
        self._rules: CampaignRules | None = None
        self._resolved: tuple[str, list[ResolvedCampaign]] | None = None
        self.generation = 0

    def campaigns(self, model: ActiveModel) -> list[ResolvedCampaign]:
        """The rules resolved against ``model``'s segment names (empty without a rules file)."""
        if self.path is None:
            return []
        now = self._clock()
        if now - self._checked_at >= self.check_every_s:
            self._checked_at = now
            self._maybe_reload(model)
        if self._rules is None:
            return []
        if self._resolved is None or self._resolved[0] != model.version:
            try:
                self._resolved = (model.version, resolve(self._rules, model.names))
            except RulesError as exc:
                log.error("campaign rules do not fit bundle %s, no campaign fires until they do: %s",
                          model.version, exc)  # fmt: skip
                self._resolved = (model.version, [])
        return self._resolved[1]

    def _maybe_reload(self, model: ActiveModel) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._stamp is not None or self._rules is None:
                log.error("campaign rules file %s cannot be read (%s); keeping the rules in use", self.path, exc)
            self._stamp = None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            rules = load_rules(self.path)
            resolved = resolve(rules, model.names)
        except RulesError as exc:
            log.error("campaign rules refused, keeping the ones in use: %s", exc)
            return
        self._rules, self._resolved = rules, (model.version, resolved)
        self.generation += 1
        log.info("campaign rules loaded from %s: %s", self.path, ", ".join(c.campaign.name for c in resolved) or "none")


@dataclass
class TriggerBatch:
    """What the rules decided for one batch's changes."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    cooldowns: dict[tuple[str, str], int] = field(default_factory=dict)
    caps: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (campaign, day) -> trigger ids
    suppressed: dict[str, int] = field(default_factory=dict)


@dataclass
class PendingCampaigns:
    """Decisions of batches sent but not finalized yet: newer than the store, so they are read over it."""

    cooldowns: dict[tuple[str, str], int] = field(default_factory=dict)
    caps: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, batch: TriggerBatch) -> None:
        """Remember a batch's decisions until its finalize."""
        self.cooldowns.update(batch.cooldowns)
        for key, ids in batch.caps.items():
            self.caps[key] = self.caps.get(key, 0) + len(ids)

    def remove(self, cooldowns: Mapping[tuple[str, str], int], caps: Mapping[tuple[str, int], Sequence[str]]) -> None:
        """Forget a batch's decisions once the store holds them."""
        for key, at in cooldowns.items():
            if self.cooldowns.get(key) == at:
                del self.cooldowns[key]
        for key, ids in caps.items():
            left = self.caps.get(key, 0) - len(ids)
            if left > 0:
                self.caps[key] = left
            else:
                self.caps.pop(key, None)


def trigger_payload(
    change: SegmentChange, campaign: str, trigger_id: str, model: ActiveModel, emitted_at: str
) -> bytes:
    """``campaign-triggers``: the campaign and its deterministic id, then every field of the change."""
    fields = change_fields(change, model.names, model.descriptions, emitted_at)
    return dumps({"trigger_id": trigger_id, "campaign": campaign, **fields})


async def decide_triggers(
    changes: Sequence[SegmentChange],
    campaigns: Sequence[ResolvedCampaign],
    store: StateStore,
    pending: PendingCampaigns,
    model: ActiveModel,
) -> TriggerBatch:
    """Run the rules over ``changes`` with the stored and pending state; nothing is written here."""
    out = TriggerBatch()
    if not changes or not campaigns:
        return out
    names = [c.campaign.name for c in campaigns]
    days = sorted({c.event_time_ms // DAY_MS for c in changes})
    memory = await store.campaign_memory(sorted({c.customer_id for c in changes}), names, days)
    state = CampaignState(dict(memory.last_fired_ms), dict(memory.fired_per_day))
    state.last_fired_ms.update(pending.cooldowns)
    for key, n in pending.caps.items():
        state.fired_per_day[key] = state.fired_per_day.get(key, 0) + n
    emitted_at = now_iso()
    for change in changes:
        decisions = decide(campaigns, customer_id=change.customer_id, previous=change.previous_segment,
                           segment=change.segment, event_time_ms=change.event_time_ms, features=change.features,
                           change_id=change.change_id, state=state)  # fmt: skip
        for d in decisions:
            if not d.fire:
                out.suppressed[d.why] = out.suppressed.get(d.why, 0) + 1
                continue
            out.records.append((change.customer_id.encode(),
                                trigger_payload(change, d.campaign, d.trigger_id, model, emitted_at)))  # fmt: skip
            out.cooldowns[(change.customer_id, d.campaign)] = change.event_time_ms
            out.caps.setdefault((d.campaign, change.event_time_ms // DAY_MS), []).append(d.trigger_id)
    return out
