"""Fixtures of the portal's browser tests: a lake of real LSST and ZTF alerts ingested by the pipeline and
classified, served by uvicorn, two users, and one headless Debian chromium driven by Playwright for the session.

The browser is the system's ``/usr/bin/chromium`` (``make test`` installs it); nothing is downloaded at test time.
Every page a test opens goes through ``Browser.open``, which records the page's JavaScript errors and console
errors; a test ends by asserting there were none. Screenshots go to ``build/screenshots`` (not committed).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from distributed import Client
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from nightjar import paths
from nightjar.api.users import add_user_token
from nightjar.lake import read
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.streams.replay import alert_files

from ..conftest import add_context
from ..server import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALERT_FOLDERS = ("lsst/lsstcam-2025-v9.0", "ztf/ztf-avro-alert-samples", "ztf/pittgoogle-2021-v3.3")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"


@dataclass
class Portal:
    """A served lake of real alerts and the tokens of two users."""

    settings: Settings
    url: str
    objects: pa.Table  # every stored object's row, read straight from Delta
    tokens: dict[str, str]


@pytest.fixture(scope="package")
def portal(tmp_path_factory: pytest.TempPathFactory, dask_client: Client, data_dir: Path) -> Iterator[Portal]:
    """Real LSSTCam and ZTF alerts ingested by the pipeline, every object classified, served over HTTP."""
    home = tmp_path_factory.mktemp("portal-home")
    unlimited = {"anonymous": 0, "user": 0, "annotator": 0, "power": 0, "admin": 0}
    settings = Settings(home=home, batch_size=100, role_requests_per_minute=unlimited)
    files = alert_files([data_dir / "alerts" / folder for folder in ALERT_FOLDERS])
    report = ingest(settings, dask_client, files)
    assert report.accepted > 100 and not report.file_errors
    add_context(settings, dask_client)
    objects = read.datasets(home)[paths.OBJECTS].to_table()
    tokens = {name: add_user_token(settings, name) for name in ("alice", "bob")}
    with serving(settings) as url:
        yield Portal(settings, url, objects, tokens)


@dataclass
class Browser:
    """One chromium for the session; pages opened through it have their JavaScript errors collected."""

    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: console: {message.text}")

        page.on("console", console)
        page.goto(url)
        return page

    def sign_in(self, portal: Portal, name: str) -> None:
        """Sign ``name`` in through the sign-in form (the session cookie is the browser's from then on)."""
        page = self.open(f"{portal.url}/signin")
        page.get_by_label("Token").fill(portal.tokens[name])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("#signed-in-as")
        page.close()

    def screenshot(self, page: Page, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="package")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's chromium, headless, with a fresh profile, for the portal's tests (closed after them: the rest of the
    suite forks this process, and a live browser driver is one more thread a fork can trip on)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium: BrowserContext) -> Iterator[Browser]:
    """The session's browser, signed out, its pages closed after the test; ``errors`` holds the JavaScript
    errors of the pages the test opened."""
    chromium.clear_cookies()
    wrapped = Browser(chromium)
    try:
        yield wrapped
    finally:
        for page in chromium.pages:
            page.close()


def no_errors(browser: Browser) -> None:
    assert browser.errors == [], "JavaScript errors:\n" + "\n".join(browser.errors)


def plot_traces(page: Page, selector: str) -> list[dict[str, Any]]:
    """The traces plotly.js drew in the element: name, kind (meta), number of points."""
    traces: list[dict[str, Any]] = page.eval_on_selector(
        selector,
        "el => el.data.map(t => ({name: t.name, kind: t.meta ? t.meta.kind : null, "
        "band: t.meta ? t.meta.band : null, points: t.x.length}))",
    )
    return traces
