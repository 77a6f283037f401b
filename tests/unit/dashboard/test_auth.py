"""The dashboard login's settings: who is allowed, the secrets file Streamlit reads, and the command line."""

from __future__ import annotations

import stat
import tomllib

import pytest

from segstream.cli.dashboard import streamlit_command
from segstream.dashboard.auth import secrets_toml, write_secrets
from segstream.settings import DashboardSettings

CONFIGURED = dict(
    oidc_server_metadata_url="https://idp.example/.well-known/openid-configuration",
    oidc_client_id="segstream",
    oidc_client_secret='s"cret\\',  # quotes and backslashes must survive TOML
    oidc_cookie_secret="cookie-signing-secret",
    oidc_redirect_uri="https://dash.example/oauth2callback",
)


def test_no_provider_means_no_login_and_everyone_is_allowed():
    settings = DashboardSettings()
    assert not settings.login_required and settings.missing() == [] and settings.allows(None)


def test_allowed_users_take_emails_and_domains():
    settings = DashboardSettings(**CONFIGURED, allowed_users="ana@shop.example, @ops.example")
    assert settings.allows("Ana@Shop.example") and settings.allows("bo@ops.example")
    assert not settings.allows("eve@evil.example") and not settings.allows("x@ops.example.evil")
    assert not settings.allows(None)


def test_the_secrets_file_is_the_auth_section_and_private(tmp_path):
    settings = DashboardSettings(**CONFIGURED)
    parsed = tomllib.loads(secrets_toml(settings))["auth"]
    assert parsed == {
        "redirect_uri": "https://dash.example/oauth2callback",
        "cookie_secret": "cookie-signing-secret",
        "client_id": "segstream",
        "client_secret": 's"cret\\',
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    path = write_secrets(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tomllib.loads(path.read_text())["auth"]["client_id"] == "segstream"
    command = streamlit_command(8501, "127.0.0.1", True, path)
    assert command[command.index("--secrets.files") + 1] == str(path)


def test_a_half_configured_login_names_what_is_missing():
    settings = DashboardSettings(oidc_server_metadata_url="https://idp.example/x")
    assert settings.missing() == [
        "SEGSTREAM_DASHBOARD_OIDC_CLIENT_ID",
        "SEGSTREAM_DASHBOARD_OIDC_CLIENT_SECRET",
        "SEGSTREAM_DASHBOARD_OIDC_COOKIE_SECRET",
    ]
    with pytest.raises(ValueError, match="SEGSTREAM_DASHBOARD_OIDC_CLIENT_ID"):
        secrets_toml(settings)
