"""The offline campaign preview: it plays the stream's decisions over a history and reports the audience."""

from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle
from segstream.models.campaigns import parse_rules, resolve
from segstream.models.features import DAY_MS, FEATURE_SPEC
from segstream.models.serving import SERVING
from segstream.trainer.campaign_preview import preview
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.generate import generate_transactions
from segstream.trainer.loading import write_table
from segstream.trainer.pipeline import TrainOptions, train_bundle


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    events = clean_transactions(generate_transactions(400, 400, seed=12, dirty_fraction=0.0), "g")[0]
    bundle = tmp_path_factory.mktemp("preview") / "b"
    result = train_bundle(events, bundle, options=TrainOptions(seed=1))
    serving = load_bundle(bundle, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING]).artifact(SERVING)
    return events, bundle, serving, result.version


def _rules(serving) -> str:
    names = sorted(serving.names.items())
    return "\n".join(f'[[campaign]]\nname = "c{i}"\nenter = {seg}\ncooldown_days = 60\n' for i, (seg, _) in
                     enumerate(names))  # fmt: skip


def test_every_trigger_is_a_change_and_cooldowns_hold(setup) -> None:
    events, _, serving, version = setup
    campaigns = resolve(parse_rules(_rules(serving)), serving.names)
    result = preview(events, serving, version, campaigns, batch_size=200)
    change_ids = {c["change_id"] for c in result.changes}
    assert result.triggers and {t["change_id"] for t in result.triggers} <= change_ids
    assert len({t["trigger_id"] for t in result.triggers}) == len(result.triggers)
    fired = defaultdict(list)
    for t in result.triggers:
        fired[(t["customer_id"], t["campaign"])].append(t["event_time_ms"])
    for times in fired.values():
        assert all(b - a >= 60 * DAY_MS for a, b in zip(sorted(times), sorted(times)[1:], strict=False))
    assert any(c["cause"] == "inactivity" for c in result.changes)  # the sweep is played too
    again = preview(events, serving, version, campaigns, batch_size=200)
    assert [t["trigger_id"] for t in again.triggers] == [t["trigger_id"] for t in result.triggers]


def test_summary_counts_per_campaign_and_week(setup) -> None:
    events, _, serving, version = setup
    campaigns = resolve(parse_rules(_rules(serving)), serving.names)
    result = preview(events, serving, version, campaigns)
    summary = result.summary(campaigns)
    total = sum(c["triggers"] for c in summary["campaigns"].values())
    assert total == len(result.triggers)
    for c in summary["campaigns"].values():
        assert sum(c["per_week"].values()) == c["triggers"] >= c["customers"]


def test_cli_preview_writes_the_summary_and_a_backfill(setup, tmp_path) -> None:
    events, bundle, serving, _ = setup
    data, rules = tmp_path / "h.csv", tmp_path / "rules.toml"
    write_table(events.assign(timestamp=events["timestamp"].astype(str)), data)
    rules.write_text(_rules(serving))
    out_json, out_csv = tmp_path / "p.json", tmp_path / "backfill.csv"
    result = CliRunner().invoke(cli, ["campaigns", "preview", str(rules), "--data", str(data), "--bundle", str(bundle),
                                      "--json", str(out_json), "--out", str(out_csv)])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(out_json.read_text())
    backfill = pd.read_csv(out_csv)
    assert len(backfill) == sum(c["triggers"] for c in summary["campaigns"].values())
    assert {"trigger_id", "campaign", "change_id", "customer_id", "f_monetary"} <= set(backfill.columns)


def test_cli_refuses_a_bad_rules_file_with_line_and_field(setup, tmp_path) -> None:
    _, bundle, _, _ = setup
    rules = tmp_path / "rules.toml"
    rules.write_text('[[campaign]]\nname = "x"\nenter = "Nobody"\n')
    result = CliRunner().invoke(cli, ["campaigns", "check", str(rules), "--bundle", str(bundle)])
    assert result.exit_code == 2 and "no segment named 'Nobody'" in result.output and "Traceback" not in result.output
    rules.write_text('[[campaign]]\nname = "x"\nenter = 1\ncooldown_days = "soon"\n')
    result = CliRunner().invoke(cli, ["campaigns", "check", str(rules), "--bundle", str(bundle)])
    assert result.exit_code == 2 and "line 4, campaign.0.cooldown_days" in result.output
