"""Shared helpers of the dashboard tests: one small real bundle per test session, AppTest setup.

The bundle is built through the CLI (``segstream generate`` then ``segstream train``), the way a user
makes one, once per session under pytest's base temp dir, and reused by unit, integration and browser tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.dashboard import app_path
from segstream.dashboard.data import BUNDLE_ENV, OFFLINE_ENV


def build_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained on 400 generated customers over 400 days (built once per session)."""
    root = tmp_path_factory.getbasetemp() / "dashboard-bundle"
    bundle = root / "bundle"
    if (bundle / "manifest.json").exists():
        return bundle
    root.mkdir(parents=True, exist_ok=True)
    data = root / "events.csv"
    runner = CliRunner()
    for args in (["generate", "--customers", "400", "--days", "400", "--seed", "3", "--out", str(data)],
                 ["train", "--data", str(data), "--out", str(bundle), "--horizon", "14"]):  # fmt: skip
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    return bundle


@pytest.fixture(scope="session")
def dashboard_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the session's small bundle."""
    return build_bundle(tmp_path_factory)


@pytest.fixture
def fresh_streamlit_caches() -> Iterator[None]:
    """Clear Streamlit's process-wide caches (settings, bundle, readers) around each AppTest."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def make_app(monkeypatch: pytest.MonkeyPatch, bundle: Path | str, offline: bool = True) -> object:
    """An AppTest of the dashboard on ``bundle`` (live state off unless ``offline`` is False)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    if offline:
        monkeypatch.setenv(OFFLINE_ENV, "1")
    else:
        monkeypatch.delenv(OFFLINE_ENV, raising=False)
    return AppTest.from_file(str(app_path()), default_timeout=60)


PAGES = {
    "live": "screens/live.py",
    "customer": "screens/customer.py",
    "whatif": "screens/whatif.py",
    "segments": "screens/segments.py",
    "forecasts": "screens/forecasts.py",
}


def open_page(app: object, page: str) -> object:
    """Run the app (once) and then the given page; returns the AppTest after the page ran."""
    at = app
    at.run()  # type: ignore[attr-defined]
    if page != "live":
        at.switch_page(PAGES[page]).run()  # type: ignore[attr-defined]
    return at


def texts(at: object) -> str:
    """All visible text of the app's main area and sidebar, joined (for 'says clearly what' checks)."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "error", "warning", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(m.label) + " " + str(m.value) for m in at.metric]  # type: ignore[attr-defined]
    return "\n".join(parts)
