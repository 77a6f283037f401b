"""The dashboard's login: Streamlit's own OIDC flow (``st.login``), configured by ``SEGSTREAM_DASHBOARD_*``.

``segstream dashboard`` renders the provider settings into a secrets file only the user can read and points
Streamlit at it; the app then asks for a login before any page shows customer data, and refuses users
outside ``SEGSTREAM_DASHBOARD_ALLOWED_USERS``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from segstream.settings import DashboardSettings

CALLBACK_PATH = "/oauth2callback"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def secrets_toml(settings: DashboardSettings) -> str:
    """The ``[auth]`` section Streamlit's ``st.login`` reads."""
    if settings.missing():
        raise ValueError("the dashboard login needs " + ", ".join(settings.missing()))
    assert settings.oidc_client_secret is not None and settings.oidc_cookie_secret is not None
    values = {
        "redirect_uri": settings.oidc_redirect_uri,
        "cookie_secret": settings.oidc_cookie_secret.get_secret_value(),
        "client_id": settings.oidc_client_id or "",
        "client_secret": settings.oidc_client_secret.get_secret_value(),
        "server_metadata_url": settings.oidc_server_metadata_url or "",
    }
    return "[auth]\n" + "".join(f"{k} = {_toml_string(v)}\n" for k, v in values.items())


def write_secrets(settings: DashboardSettings) -> Path:
    """Write the secrets file into a fresh private directory (0700 / 0600) and return its path."""
    directory = Path(tempfile.mkdtemp(prefix="segstream-dashboard-"))
    path = directory / "secrets.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets_toml(settings))
    return path


def gate(settings: DashboardSettings) -> None:
    """Stop the page here unless the viewer may see it: logged in (when a login is configured) and allowed."""
    if not settings.login_required:
        return
    import streamlit as st

    if not st.user.is_logged_in:
        st.title("segstream")
        st.write("This dashboard shows customer-level data. Log in to continue.")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    email = st.user.get("email")
    if not settings.allows(email if isinstance(email, str) else None):
        st.error(f"{email or 'This account'} may not see this dashboard.")
        st.button("Log out", on_click=st.logout)
        st.stop()
