"""``segstream stack`` / ``segstream topics`` without servers: help, status and down of a stopped stack,
and a clean exit-2 error when the broker cannot be reached. (Starting real servers: tests/integration.)"""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stopped_stack_env(tmp_path, monkeypatch):
    state = tmp_path / "stack"
    monkeypatch.setenv("SEGSTREAM_STACK_STATE_DIR", str(state))
    monkeypatch.setenv("SEGSTREAM_STACK_KAFKA_PORT", str(_free_port()))
    monkeypatch.setenv("SEGSTREAM_STACK_REDIS_PORT", str(_free_port()))
    return state


@pytest.mark.parametrize(
    "args",
    [
        ["stack", "--help"],
        ["stack", "up", "--help"],
        ["stack", "down", "--help"],
        ["stack", "status", "--help"],
        ["stack", "restart-redis", "--help"],
        ["topics", "--help"],
        ["topics", "create", "--help"],
    ],
)
def test_every_command_has_help(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_status_of_a_stopped_stack(stopped_stack_env):
    result = CliRunner().invoke(cli, ["stack", "status"])
    assert result.exit_code == 0, result.output
    assert "kafka  stopped" in result.output and "redis  stopped" in result.output
    assert str(stopped_stack_env / "kafka.log") in result.output


def test_status_json_shape(stopped_stack_env, monkeypatch):
    result = CliRunner().invoke(cli, ["stack", "status", "--json"])
    assert result.exit_code == 0
    status = json.loads(result.output)
    assert status["state_dir"] == str(stopped_stack_env.resolve())
    for name in ("kafka", "redis"):
        assert status[name]["running"] is False and status[name]["pid"] is None
        assert status[name]["answering"] is False and isinstance(status[name]["port"], int)
    assert status["redis"]["url"].startswith("redis://127.0.0.1:")


def test_down_when_down_is_fine(stopped_stack_env):
    result = CliRunner().invoke(cli, ["stack", "down", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {"kafka": "not running", "redis": "not running"}


def test_status_clears_a_stale_pid_file(stopped_stack_env):
    stopped_stack_env.mkdir(parents=True)
    (stopped_stack_env / "redis.pid").write_text("999999999\n")
    result = CliRunner().invoke(cli, ["stack", "status", "--json"])
    assert json.loads(result.output)["redis"]["pid"] is None
    assert not (stopped_stack_env / "redis.pid").exists()


def test_topics_create_against_unreachable_broker_exits_2_naming_it(monkeypatch):
    address = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS", address)
    result = CliRunner().invoke(cli, ["topics", "create", "--connect-timeout", "1"])
    assert result.exit_code == 2
    assert address in result.output and "Traceback" not in result.output


def test_topics_create_rejects_zero_partitions():
    result = CliRunner().invoke(cli, ["topics", "create", "--partitions", "0"])
    assert result.exit_code == 2 and "partitions" in result.output.lower()
