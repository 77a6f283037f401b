"""Campaign rules: which segment changes fire which campaign, at most how often, for whom.

A rules file (TOML) lists campaigns. Each names a trigger on a segment change (``enter`` a segment,
``exit`` one, or ``from``/``to`` for a move; segments by name or id), a per-customer cooldown in event-time
days (the re-eligibility window), an optional cap per UTC day and optional conditions on features::

    [[campaign]]
    name = "win-back"
    enter = "At risk"
    cooldown_days = 30
    cap_per_day = 500
    conditions = [{ feature = "monetary", op = ">=", value = 100 }]

    [[campaign]]
    name = "thank-you"
    from = "Loyal"
    to = "Champions"

The file is validated with pydantic; a bad file is refused with the line and field at fault
(:class:`RulesError`), so the caller can keep the rules it has. :func:`decide` is the one rule evaluation
both the offline preview and the stream use; it is pure: the cooldown and cap state is passed in and the
decisions say what to record.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segstream.models.errors import SegstreamError
from segstream.models.features import DAY_MS, FEATURE_NAMES

Op = Literal[">=", ">", "<=", "<", "==", "!="]
_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
SegmentRef = str | int


class RulesError(SegstreamError):
    """A rules file that cannot be used; the message names the file, line and field."""

    exit_code = 2


class Condition(BaseModel):
    """``feature op value`` on the customer's features at the change."""

    model_config = ConfigDict(extra="forbid")
    feature: str
    op: Op
    value: float

    @field_validator("feature")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in FEATURE_NAMES:
            raise ValueError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}")
        return name

    def holds(self, features: Mapping[str, float]) -> bool:
        value = features.get(self.feature)
        return value is not None and bool(_OPS[self.op](float(value), self.value))


class Campaign(BaseModel):
    """One campaign: its trigger, cooldown, daily cap and conditions."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    enter: SegmentRef | None = None
    exit: SegmentRef | None = None
    from_: SegmentRef | None = Field(default=None, alias="from")
    to: SegmentRef | None = None
    cooldown_days: float = Field(default=0.0, ge=0)
    cap_per_day: int | None = Field(default=None, ge=1)
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_trigger(self) -> Campaign:
        kinds = [k for k, v in (("enter", self.enter), ("exit", self.exit)) if v is not None]
        if self.from_ is not None or self.to is not None:
            if self.from_ is None or self.to is None:
                raise ValueError("a move needs both 'from' and 'to'")
            kinds.append("move")
        if len(kinds) != 1:
            raise ValueError(f"give exactly one trigger: enter, exit, or from + to (got {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return "enter" if self.enter is not None else "exit" if self.exit is not None else "move"


class CampaignRules(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")
    campaign: list[Campaign] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> CampaignRules:
        seen: set[str] = set()
        for c in self.campaign:
            if c.name in seen:
                raise ValueError(f"campaign name {c.name!r} is used twice")
            seen.add(c.name)
        return self


def _line_of(text: str, loc: Sequence[Any]) -> int | None:
    """The line a pydantic error location points at: the field inside the n-th ``[[campaign]]`` table."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if re.match(r"^\s*\[\[\s*campaign\s*\]\]", line)]
    if len(loc) < 2 or loc[0] != "campaign" or not isinstance(loc[1], int) or loc[1] >= len(headers):
        return None
    start = headers[loc[1]]
    end = headers[loc[1] + 1] if loc[1] + 1 < len(headers) else len(lines)
    if len(loc) >= 3 and isinstance(loc[2], str):
        key = "from" if loc[2] == "from_" else loc[2]
        for i in range(start + 1, end):
            if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
                return i + 1
    return start + 1


def parse_rules(text: str, source: str = "rules") -> CampaignRules:
    """Validate rules text (TOML).

    Raises:
        RulesError: Not TOML, or a campaign that does not validate; the message names line and field.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    try:
        return CampaignRules.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for p in err["loc"] if p not in ("function-after[_one_trigger(), Campaign]",)]
        line = _line_of(text, loc)
        where = ".".join(str(p) for p in loc) or "file"
        at = f" line {line}," if line else ""
        raise RulesError(f"{source}:{at} {where}: {err['msg']}") from None


def load_rules(path: str | Path) -> CampaignRules:
    """Read and validate a rules file (see :func:`parse_rules`)."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{target}: cannot read the rules file: {exc.strerror or exc}") from None
    return parse_rules(text, str(target))


@dataclass(frozen=True)
class ResolvedCampaign:
    """A campaign with its segments resolved to ids against a bundle's names."""

    campaign: Campaign
    enter: int | None
    exit: int | None
    move: tuple[int, int] | None

    def matches(self, previous: int | None, segment: int) -> bool:
        if self.enter is not None:
            return segment == self.enter and previous != segment
        if self.exit is not None:
            return previous == self.exit and segment != previous
        return self.move is not None and (previous, segment) == self.move


def resolve(rules: CampaignRules, names: Mapping[int, str]) -> list[ResolvedCampaign]:
    """Resolve segment names (or ids) against a bundle's names.

    Raises:
        RulesError: A segment name the bundle does not have.
    """
    by_name = {v.lower(): k for k, v in names.items()}

    def seg(ref: SegmentRef | None, campaign: str) -> int | None:
        if ref is None:
            return None
        known = ", ".join(f"{k} {v!r}" for k, v in sorted(names.items()))
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            if int(ref) not in names:
                raise RulesError(f"campaign {campaign!r}: the bundle has no segment {ref} (segments: {known})")
            return int(ref)
        if ref.lower() not in by_name:
            raise RulesError(f"campaign {campaign!r}: no segment named {ref!r} in the bundle (segments: {known})")
        return by_name[ref.lower()]

    out = []
    for c in rules.campaign:
        move = (seg(c.from_, c.name), seg(c.to, c.name)) if c.kind == "move" else None
        out.append(ResolvedCampaign(c, seg(c.enter, c.name), seg(c.exit, c.name), move))  # type: ignore[arg-type]
    return out


@dataclass
class CampaignState:
    """What the rules remember: when each customer last got each campaign, and triggers per campaign and day."""

    last_fired_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    fired_per_day: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """One campaign's answer to one change."""

    campaign: str
    fire: bool
    why: str  # "fired", "cooldown", "cap", "conditions"
    trigger_id: str


def trigger_id(change_id: str, campaign: str) -> str:
    """Deterministic: the same change and campaign give the same id (a re-emission is deduped on it)."""
    return hashlib.sha256(f"{change_id}\x1f{campaign}".encode()).hexdigest()[:32]


def decide(
    campaigns: Sequence[ResolvedCampaign],
    *,
    customer_id: str,
    previous: int | None,
    segment: int,
    event_time_ms: int,
    features: Mapping[str, float],
    change_id: str,
    state: CampaignState,
) -> list[Decision]:
    """Evaluate every matching campaign on one change and record the fired ones in ``state``.

    Order of the checks: the trigger, then the conditions, then the customer's cooldown (event time since
    the customer last got this campaign), then the campaign's cap for the UTC day of the change.
    """
    out: list[Decision] = []
    day = event_time_ms // DAY_MS
    for rc in campaigns:
        if not rc.matches(previous, segment):
            continue
        c = rc.campaign
        tid = trigger_id(change_id, c.name)
        if not all(cond.holds(features) for cond in c.conditions):
            out.append(Decision(c.name, False, "conditions", tid))
            continue
        last = state.last_fired_ms.get((customer_id, c.name))
        if last is not None and event_time_ms - last < c.cooldown_days * DAY_MS:
            out.append(Decision(c.name, False, "cooldown", tid))
            continue
        fired_today = state.fired_per_day.get((c.name, day), 0)
        if c.cap_per_day is not None and fired_today >= c.cap_per_day:
            out.append(Decision(c.name, False, "cap", tid))
            continue
        state.last_fired_ms[(customer_id, c.name)] = event_time_ms
        state.fired_per_day[(c.name, day)] = fired_today + 1
        out.append(Decision(c.name, True, "fired", tid))
    return out
