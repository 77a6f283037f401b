"""The dashboard in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

``segstream dashboard --bundle B --port P --no-live`` runs as a real server; every page is visited, its
visible text checked, and a screenshot saved under the test's tmp dir (and copied to
``/tmp/dashboard-<page>.png`` for a human look). Playwright never downloads a browser here: it drives
``/usr/bin/chromium``; without it the tests are skipped. A second test runs against live state (Redis and
topics filled as in :mod:`tests.integration.dashboard_live_state`) and checks the Live and Customer pages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from segstream.viz.bundle_tables import BundleTables
from tests.integration.conftest import free_port
from tests.integration.dashboard_live_state import live_env, topics
from tests.unit.dashboard.fixtures import dashboard_bundle

pytestmark = [pytest.mark.browser, pytest.mark.integration]
__all__ = ["dashboard_bundle", "live_env", "topics"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@contextmanager
def running_dashboard(
    bundle: Path, tmp_path: Path, live: bool, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A running ``segstream dashboard`` on a free port (bundle only unless ``live``); yields its base URL."""
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    env = dict(os.environ) if live else {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env.update(extra_env or {})
    command = [sys.executable, "-c", "from segstream.cli.main import main; main()", "dashboard",
               "--bundle", str(bundle), "--port", str(port), *([] if live else ["--no-live"])]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "dashboard did not start in 40 s"
            time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # the CLI exec'd into streamlit: this pid is the server
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
)


def _check(
    page, base: str, name: str, path: str, expected: list[str], out: Path, in_tables: tuple[str, ...] = ()
) -> None:
    """Visit, check the heading and texts, no exception box, save a screenshot (and a copy in /tmp).

    ``in_tables`` are texts inside st.dataframe grids: drawn on a canvas, present in the page only as the
    grid's hidden accessibility cells, so they are checked for presence, not visibility.
    """
    from playwright.sync_api import expect

    page.goto(base + path)
    expect(page.locator("h1").first).to_have_text(expected[0], timeout=30_000)
    for text in expected[1:]:
        expect(page.get_by_text(text).first).to_be_visible(timeout=30_000)
    for text in in_tables:
        expect(page.locator("[data-testid^='glide-cell']", has_text=text).first).to_be_attached(timeout=30_000)
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
    page.wait_for_timeout(400)  # let plotly finish drawing for the screenshot
    shot = out / f"dashboard-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    shutil.copy(shot, f"/tmp/dashboard-{name}.png")


@needs_chromium
def test_every_page_in_a_real_browser(dashboard_bundle, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    tables = BundleTables.open(dashboard_bundle)
    customer = tables.customers.sort_values("predicted_spend_90d").iloc[-1]
    some_name = next(iter(tables.segment_names.values()))
    visits = [
        ("live", "/", ["Live", "Segment sizes at training", "not available", "live state is switched off"]),
        ("customer", f"/customer?id={customer['customer_id']}",
         ["Customer", customer["segment_name"], "Where this customer stands", "90-day spend (predicted)"]),
        ("what-if", "/what-if", ["What-if", "K-Means segment", "Decision-tree segment", "Why the tree says so"]),
        ("segments", "/segments", ["Segments", "Customers by segment (PCA)", "Segment profiles", "Elbow",
                                   "Decision tree confusion matrix", some_name]),
        ("forecasts", "/forecasts", ["Forecasts", "Daily net sales and forecast", "Backtest error",
                                     "Worker forecast refresh: not available"]),
    ]  # fmt: skip
    with running_dashboard(dashboard_bundle, tmp_path, live=False) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        for name, path, expected in visits:
            _check(page, base, name, path, expected, tmp_path)
        # The sidebar navigation works by clicking, too.
        page.get_by_role("link", name="Segments").click()
        expect(page.locator("h1").first).to_have_text("Segments", timeout=30_000)
        browser.close()


@needs_chromium
def test_live_pages_in_a_real_browser(live_env, dashboard_bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    with running_dashboard(dashboard_bundle, tmp_path, live=True) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        expected = ["Live", "Redis: live state", "2,000", "Segment mix over time", "Segment mix: live vs. training",
                    "Streamed net sales per day"]  # fmt: skip
        _check(page, base, "live-with-worker", "/", expected, tmp_path, in_tables=(live_env["mover"], "inactivity"))
        expected = ["Customer", "Live state from Redis", "Segment history"]
        _check(page, base, "customer-live", f"/customer?id={live_env['mover']}", expected, tmp_path,
               in_tables=("inactivity",))  # fmt: skip
        browser.close()


@needs_chromium
def test_with_a_login_configured_no_page_shows_data_before_the_login(dashboard_bundle, tmp_path):
    """An OIDC provider in the settings: the dashboard answers with a login button and nothing else."""
    from playwright.sync_api import expect, sync_playwright

    login = {
        "SEGSTREAM_DASHBOARD_OIDC_SERVER_METADATA_URL": "https://idp.example.invalid/.well-known/openid-configuration",
        "SEGSTREAM_DASHBOARD_OIDC_CLIENT_ID": "segstream",
        "SEGSTREAM_DASHBOARD_OIDC_CLIENT_SECRET": "not-a-real-secret",
        "SEGSTREAM_DASHBOARD_OIDC_COOKIE_SECRET": "a-long-random-cookie-signing-secret",
    }
    with running_dashboard(dashboard_bundle, tmp_path, live=False, extra_env=login) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for path in ("/", "/customer", "/segments"):
                page = browser.new_page()
                page.goto(base + path)
                expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=30_000)
                expect(page.get_by_text("Log in to continue")).to_be_visible()
                expect(page.get_by_text("Model bundle directory")).to_have_count(0)  # not even the sidebar
                expect(page.locator("[data-testid='stException']")).to_have_count(0)
                page.close()
        finally:
            browser.close()
