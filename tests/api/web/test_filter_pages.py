"""Filter pages in a real browser: create (SQL checked on save), list, backtest, copy; a private filter is a 404
for another user."""

from __future__ import annotations

import json
import re

import pytest

from nightjar.cli import main
from nightjar.sql import registry
from nightjar.sql.backtest import backtest, last_nights_since

from .conftest import Browser, Portal, no_errors

SQL = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 10000"


def cli_filters(
    portal: Portal, owner: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list:
    monkeypatch.setenv("NIGHTJAR_HOME", str(portal.settings.home))
    capsys.readouterr()
    assert main(["filter", "list", "--owner", owner, "--mine"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


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
    assert cli_filters(portal, "alice", capsys, monkeypatch) == []
    page.get_by_label("SQL (checked when you save)").fill(SQL)
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#filter-sql")
    filter_id = int(re.search(r"/filters/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    listed = cli_filters(portal, "alice", capsys, monkeypatch)
    assert [(f["id"], f["name"]) for f in listed] == [(filter_id, "bright in the browser")]
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
