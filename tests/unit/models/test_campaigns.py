"""Campaign rules: a bad file is refused with line and field; decide() honours trigger, conditions,
cooldown and cap, and its ids are deterministic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.models.campaigns import CampaignState, RulesError, decide, parse_rules, resolve, trigger_id
from segstream.models.features import DAY_MS

NAMES = {0: "Champions", 1: "Loyal", 2: "At risk", 3: "Lost"}
RULES = """
[[campaign]]
name = "win-back"
enter = "At risk"
cooldown_days = 30
conditions = [{ feature = "monetary", op = ">=", value = 100 }]

[[campaign]]
name = "thank-you"
from = "Loyal"
to = "Champions"
cap_per_day = 2

[[campaign]]
name = "farewell"
exit = 0
"""


def _decide(campaigns, state, customer="c1", previous=1, segment=2, day=0.0, monetary=150.0, change="x"):
    return decide(campaigns, customer_id=customer, previous=previous, segment=segment,
                  event_time_ms=int(day * DAY_MS), features={"monetary": monetary}, change_id=change,
                  state=state)  # fmt: skip


@pytest.fixture
def campaigns():
    return resolve(parse_rules(RULES), NAMES)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[campaign]]\nname = "a"\nenter = "At risk"\ncooldown_days = -1\n', "line 4, campaign.0.cooldown_days"),
        ('[[campaign]]\nname = "a"\nfrom = "Loyal"\n', "line 1, campaign.0"),
        ('[[campaign]]\nname = "a"\nenter = 1\nexit = 2\n', "exactly one trigger"),
        ('[[campaign]]\nname = "a"\nenter = 1\n\n[[campaign]]\nname = "b"\nenter = 1\ncolor = "red"\n',
         "line 8, campaign.1.color"),
        ('[[campaign]]\nname = "a"\nenter = 1\nconditions = [{feature = "monetry", op = ">=", value = 1}]\n',
         "unknown feature 'monetry'"),
        ('[[campaign]\nname = "a"\n', "not valid TOML"),
        ('[[campaign]]\nname = "a"\nenter = 1\n[[campaign]]\nname = "a"\nenter = 2\n', "used twice"),
    ],
)
def test_a_bad_file_is_refused_with_line_and_field(text, where) -> None:
    with pytest.raises(RulesError, match="rules.toml") as err:
        parse_rules(text, "rules.toml")
    assert where in str(err.value)


def test_unknown_segment_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(RulesError, match="no segment named 'Sleepers'.*Champions"):
        resolve(parse_rules('[[campaign]]\nname = "a"\nenter = "Sleepers"\n'), NAMES)


def test_triggers_conditions_and_cooldown(campaigns) -> None:
    state = CampaignState()
    fired = [d.campaign for d in _decide(campaigns, state) if d.fire]
    assert fired == ["win-back"]
    again = _decide(campaigns, state, day=10, change="y")  # within 30 days: cooldown
    assert [(d.campaign, d.why) for d in again] == [("win-back", "cooldown")]
    assert [d.fire for d in _decide(campaigns, state, day=31, change="z")] == [True]
    assert [d.why for d in _decide(campaigns, state, customer="c2", monetary=50)] == ["conditions"]
    assert [d.campaign for d in _decide(campaigns, state, previous=0, segment=3) if d.fire] == ["farewell"]
    assert _decide(campaigns, state, previous=2, segment=2) == []  # not a change into At risk


def test_the_daily_cap_holds_per_utc_day(campaigns) -> None:
    state = CampaignState()
    outcomes = [_decide(campaigns, state, customer=f"c{i}", previous=1, segment=0, day=5.5)[0].why for i in range(4)]
    assert outcomes == ["fired", "fired", "cap", "cap"]
    assert _decide(campaigns, state, customer="c9", previous=1, segment=0, day=6.1)[0].fire


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 365)), min_size=1, max_size=60))
def test_a_customer_never_gets_a_campaign_twice_within_its_cooldown(moves) -> None:
    campaigns = resolve(parse_rules(RULES), NAMES)
    state, fired_at, previous = CampaignState(), [], None
    for i, (segment, day) in enumerate(sorted(moves, key=lambda m: m[1])):
        if segment != previous:
            for d in _decide(campaigns, state, previous=previous, segment=segment, day=day, change=str(i)):
                if d.fire and d.campaign == "win-back":
                    fired_at.append(day)
        previous = segment
    assert all(b - a >= 30 - 1e-6 for a, b in zip(fired_at, fired_at[1:], strict=False))


def test_trigger_ids_are_deterministic_and_distinct() -> None:
    assert trigger_id("c", "a") == trigger_id("c", "a") != trigger_id("c", "b") != trigger_id("d", "a")
