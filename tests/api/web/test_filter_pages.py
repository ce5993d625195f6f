"""Filter pages in a real browser: create (SQL checked on save), list, backtest, copy; a private filter is a 404
for another user."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.api.web.session import SESSION_COOKIE
from nightjar.cli import main
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.backtest import backtest, last_nights_since

from ..test_filter_messages_api import _produce
from .conftest import Browser, Portal, no_errors

SQL = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 10000"


def cli_filters(
    portal: Portal, owner: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list:
    monkeypatch.setenv("NIGHTJAR_HOME", str(portal.settings.home))
    capsys.readouterr()
    assert main(["filter", "list", "--owner", owner, "--mine"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(180)  # browser, CLI and a backtest: ~20 s on a quiet 2-core machine, with the portal's start
def test_a_filter_made_in_the_browser_is_listed_by_the_cli(
    browser: Browser, portal: Portal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    browser.sign_in(portal, "alice")
    page = browser.open(f"{portal.url}/filters")
    page.get_by_role("link", name="New filter").click()
    page.get_by_label("Name").fill("bright in the browser")
    page.get_by_label("SQL (checked when you save)").fill("SELECT nope FROM sources")
    page.get_by_role("button", name="Save").click()
    error = page.wait_for_selector("#filter-error")
    assert error is not None and "nope" in error.inner_text()
    assert "bright in the browser" not in [f["name"] for f in cli_filters(portal, "alice", capsys, monkeypatch)]
    page.get_by_label("SQL (checked when you save)").fill(SQL)
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#filter-sql")
    filter_id = int(re.search(r"/filters/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    listed = cli_filters(portal, "alice", capsys, monkeypatch)
    assert [f["id"] for f in listed if f["name"] == "bright in the browser"] == [filter_id]
    browser.screenshot(page, "filter")
    # Backtest over the lake's last nights: the counts of the library's backtest, night by night.
    page.get_by_label("Over the last").fill("30")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("#backtest")
    shown = page.eval_on_selector_all(
        "#backtest tbody tr", "trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()))"
    )
    db = registry.engine(portal.settings.metadata_url)
    flt = registry.get_filter(db, filter_id)
    db.dispose()
    since = last_nights_since(portal.settings.home, 30)
    assert since is not None
    expected = backtest(portal.settings, flt.spec, flt.mode, since)
    assert shown == [[str(n.night), str(n.alerts), str(n.delivered.num_rows)] for n in expected.nights]
    assert expected.delivered > 0 and page.inner_text("#backtest-total") == str(expected.delivered)
    page.goto(f"{portal.url}/filters")
    assert page.locator("#my-filters", has_text="bright in the browser").count() == 1
    browser.screenshot(page, "filters")
    no_errors(browser)


def test_a_private_filter_is_a_404_for_another_user(browser: Browser, portal: Portal) -> None:
    db = registry.engine(portal.settings.metadata_url)
    secret = registry.add_filter(db, "alice secret", SQL, owner="alice", visibility="private")
    public = registry.add_filter(db, "alice public", SQL, owner="alice", visibility="public")
    db.dispose()
    browser.sign_in(portal, "bob")
    page = browser.open(f"{portal.url}/filters/{secret.id}")
    assert page.inner_text("#error-detail") == f"no filter {secret.id}"
    assert len(browser.errors) == 1 and "404" in browser.errors[0]  # the document's own status, nothing else
    browser.errors.clear()
    listing = browser.open(f"{portal.url}/filters")
    assert listing.locator("#public-filters", has_text="alice public").count() == 1
    assert listing.locator("text=alice secret").count() == 0
    # Bob copies the public filter: his own private copy, which he may edit.
    listing.get_by_role("link", name="alice public").click()
    listing.get_by_role("button", name="Copy").click()
    listing.wait_for_selector("#filter-form")
    assert listing.input_value("#name") == "alice public (copy)"
    assert listing.locator("#edit-filter").count() == 0 and public.id
    no_errors(browser)


def test_an_owner_edits_a_filter_and_a_new_version_is_made(browser: Browser, portal: Portal) -> None:
    db = registry.engine(portal.settings.metadata_url)
    made = registry.add_filter(db, "to edit", SQL, owner="alice", visibility="private")
    browser.sign_in(portal, "alice")
    page = browser.open(f"{portal.url}/filters/{made.id}")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("SQL (checked when you save)").fill(SQL.replace("10000", "20000"))
    page.get_by_label("Visibility").select_option("public")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#filter-sql")
    assert "20000" in page.inner_text("#filter-sql") and "version 2" in page.inner_text(".facts")
    stored = registry.get_filter(db, made.id)
    db.dispose()
    assert (stored.version, stored.visibility) == (2, "public") and "20000" in stored.sql
    no_errors(browser)


def test_the_filter_page_shows_its_topics_recent_messages(kafka_settings: Settings) -> None:
    token = add_user_token(kafka_settings, "alice")
    db = registry.engine(kafka_settings.metadata_url)
    made = registry.add_filter(db, "messages", SQL, owner="alice", visibility="private")
    db.dispose()
    rows = [{"diaObjectId": str(10**17 + i), "psfFlux": 60000.0 + i} for i in range(3)]
    _produce(
        kafka_settings,
        made.topic,
        [
            (json.dumps(r).encode(), [("nightjar.format", b"json"), ("nightjar.key", f"k{i}".encode())])
            for i, r in enumerate(rows)
        ],
    )
    with TestClient(create_app(kafka_settings)) as client:
        client.cookies.set(SESSION_COOKIE, token)
        page = client.get(f"/filters/{made.id}")
        assert page.status_code == 200
        table = page.text[page.text.index('id="messages"') :]
        for i, row in enumerate(rows):
            assert f"<td>k{i}</td>" in table and row["diaObjectId"] in table
        client.cookies.clear()
        assert client.get(f"/filters/{made.id}").status_code == 404  # private: not for anonymous visitors
