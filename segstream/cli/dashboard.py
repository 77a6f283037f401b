"""``segstream dashboard``: start the Streamlit app on a bundle (live state from Redis/Kafka when reachable)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def streamlit_command(port: int, address: str, headless: bool, secrets: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line for the dashboard app (run with this Python)."""
    from segstream.dashboard import app_path

    extra = ["--secrets.files", str(secrets)] if secrets is not None else []
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", address,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--theme.base", "light", "--client.toolbarMode", "minimal", *extra,
    ]  # fmt: skip


@click.command()
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Bundle directory to show (default: <SEGSTREAM_MODEL_ROOT>/current).")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="HTTP port.")
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container)."
)
@click.option("--no-live", is_flag=True, help="Show the bundle only; do not try Redis or Kafka.")
@click.option("--open-browser/--no-open-browser", default=False, show_default=True, help="Open a browser tab.")
def dashboard(bundle: Path | None, port: int, address: str, no_live: bool, open_browser: bool) -> None:
    """Start the Streamlit dashboard (Live, Customer, What-if, Segments, Forecasts).

    Every page works on a bundle alone; with the worker running, the Live, Customer and Forecasts pages
    also read Redis and the output topics (read-only).
    """
    from segstream.dashboard.auth import write_secrets
    from segstream.dashboard.data import BUNDLE_ENV, OFFLINE_ENV, open_tables
    from segstream.settings import DashboardSettings

    env = dict(os.environ)
    if bundle is not None:
        open_tables(bundle)  # a bad path fails here with a clear message (exit 2), not in the browser
        env[BUNDLE_ENV] = str(bundle.resolve())
    if no_live:
        env[OFFLINE_ENV] = "1"
    login = DashboardSettings()
    secrets = None
    if login.login_required:
        if login.missing():
            raise click.UsageError("the dashboard login needs " + ", ".join(login.missing()))
        secrets = write_secrets(login)
        click.echo(f"login: OIDC via {login.oidc_server_metadata_url} (callback {login.oidc_redirect_uri})")
    elif address not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: customer-level data on {address} with no login; set SEGSTREAM_DASHBOARD_OIDC_* "
                   "(docs/operations.md)", err=True)  # fmt: skip
    click.echo(f"segstream dashboard on http://{address}:{port}  (Ctrl-C to stop)")
    command = streamlit_command(port, address, not open_browser, secrets)
    # Replace this process with Streamlit: signals (Ctrl-C, SIGTERM from a supervisor) reach it directly
    # and no orphaned server is left behind when the launcher is killed.
    os.execve(sys.executable, command, env)  # noqa: S606


COMMANDS = [dashboard]
