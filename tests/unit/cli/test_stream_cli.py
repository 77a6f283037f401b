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


def _mixed_file(tmp_path):
    data = tmp_path / "mixed.csv"
    data.write_text("event_id,customer_id,timestamp,amount\n"
                    "e1,C1,1997-01-01T00:00:00Z,10\n"      # valid with the default 1970 floor
                    "e2,C 2,1997-01-02T00:00:00Z,10\n"     # a space in the customer id
                    "e3,C3,1997-01-03T00:00:00Z,abc\n"     # not a number
                    "e4,C4,1997-01-04T00:00:00Z,abc\n")  # fmt: skip
    return data


def test_replay_strict_reports_what_the_worker_would_refuse_and_sends_nothing(tmp_path):
    # The broker address is unreachable: --strict must stop before connecting.
    env = {"SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = CliRunner().invoke(cli, ["replay", str(_mixed_file(tmp_path)), "--strict"], env=env)
    assert result.exit_code == 2, result.output
    assert "the worker would dead-letter 3 rows" in result.output
    assert "invalid_amount" in result.output and "first at row 3: 'abc', row 4: 'abc'" in result.output
    assert "invalid_customer_id" in result.output and "nothing was sent" in result.output
    assert "Traceback" not in result.output


def test_replay_strict_follows_the_events_time_floor_setting(tmp_path):
    env = {"SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SEGSTREAM_EVENTS_MIN_TIMESTAMP": "2000-01-01"}
    data = tmp_path / "old.csv"
    data.write_text("event_id,customer_id,timestamp,amount\ne1,C1,1997-01-01T00:00:00Z,10\n")
    result = CliRunner().invoke(cli, ["replay", str(data), "--strict"], env=env)
    assert result.exit_code == 2 and "timestamp_out_of_range" in result.output, result.output


def test_replay_refuses_strict_with_send_invalid(tmp_path):
    result = CliRunner().invoke(cli, ["replay", str(_mixed_file(tmp_path)), "--strict", "--send-invalid"])
    assert result.exit_code == 2 and "either --strict or --send-invalid" in result.output
