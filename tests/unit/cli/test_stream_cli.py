"""The streaming commands' thin shells: help texts and error mapping (no broker or Redis needed)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli


@pytest.mark.parametrize("command", ["worker", "replay", "customer", "rescore", "demo"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_customer_rejects_an_invalid_id_with_exit_2():
    result = CliRunner().invoke(cli, ["customer", "has space"])
    assert result.exit_code == 2 and "not valid" in result.output


def test_customer_reports_an_unreachable_redis_with_exit_2(tmp_path):
    env = {"SEGSTREAM_REDIS_URL": "redis://127.0.0.1:1/0", "SEGSTREAM_REDIS_SOCKET_TIMEOUT_S": "0.5",
           "SEGSTREAM_MODEL_ROOT": str(tmp_path)}  # fmt: skip
    result = CliRunner().invoke(cli, ["customer", "C1"], env=env)
    assert result.exit_code == 2 and "not reachable" in result.output and "Traceback" not in result.output


def test_replay_rejects_rate_and_max_speed_together(tmp_path):
    data = tmp_path / "x.csv"
    data.write_text("event_id,customer_id,timestamp,amount\n")
    result = CliRunner().invoke(cli, ["replay", str(data), "--rate", "5", "--max-speed"])
    assert result.exit_code == 2 and "either --rate or --max-speed" in result.output


def test_rescore_without_a_bundle_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["rescore"], env={"SEGSTREAM_MODEL_ROOT": str(tmp_path / "none")})
    assert result.exit_code == 2 and "no model bundle" in result.output


def test_demo_refuses_a_foreign_non_empty_state_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "precious.txt").exists()
