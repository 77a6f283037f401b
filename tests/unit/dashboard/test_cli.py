"""``segstream dashboard``: help, a clear refusal of a bad bundle, the streamlit command line."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from segstream.cli.dashboard import streamlit_command
from segstream.cli.main import cli
from segstream.dashboard import app_path


def test_help_names_the_options():
    result = CliRunner().invoke(cli, ["dashboard", "--help"])
    assert result.exit_code == 0
    for option in ("--bundle", "--port", "--no-live"):
        assert option in result.output


def test_a_bad_bundle_exits_2_with_the_path_and_no_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["dashboard", "--bundle", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"bundle directory {tmp_path / 'nope'} does not exist" in result.output
    assert "Traceback" not in result.output


def test_streamlit_command_runs_the_app_headless_on_the_port():
    command = streamlit_command(8999, "127.0.0.1", headless=True)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(app_path())]
    assert command[command.index("--server.port") + 1] == "8999"
    assert command[command.index("--server.headless") + 1] == "true"
    assert app_path().is_file()
