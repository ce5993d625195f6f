"""The SQL page in a real browser: a typed query returns the JSON API's rows, page by page; errors are shown."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Browser, Portal, no_errors

SQL = "SELECT diaSourceId, diaObjectId, band, psfFlux FROM sources ORDER BY diaSourceId"


def api_rows(portal: Portal, offset: int, limit: int) -> list[list[str]]:
    """The rows of the JSON API (as the table shows them: text, nulls blank)."""
    body = {"sql": SQL, "offset": offset, "limit": limit}
    answer = httpx.post(f"{portal.url}/api/v1/query", json=body, timeout=60).json()
    return [["" if row[c] is None else str(row[c]) for c in answer["columns"]] for row in answer["rows"]]


def table_rows(page: Any) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        "#results tbody tr", "trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent))"
    )
    return rows


def test_a_typed_query_returns_the_apis_rows(browser: Browser, portal: Portal) -> None:
    page = browser.open(f"{portal.url}/query")
    assert page.title() == "Query · Nightjar"
    page.get_by_label("SQL", exact=False).fill(SQL)
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("#results")
    first = table_rows(page)
    assert len(first) == 100 and first == api_rows(portal, 0, 100)
    browser.screenshot(page, "query")
    page.get_by_role("button", name="Next page").click()
    page.wait_for_selector("#prev-page")
    assert table_rows(page) == api_rows(portal, 100, 100)
    no_errors(browser)


def test_an_example_fills_the_editor_and_errors_point_at_the_problem(browser: Browser, portal: Portal) -> None:
    page = browser.open(f"{portal.url}/query")
    page.get_by_role("button", name="detections per band").click()
    assert "GROUP BY band" in page.input_value("#sql")
    page.fill("#sql", "SELECT no_such_column FROM sources")
    page.get_by_role("button", name="Run", exact=True).click()
    error = page.wait_for_selector("#query-error")
    assert error is not None and "no_such_column" in error.inner_text()
    # The views and their columns are listed beside the editor.
    assert page.locator("aside summary", has_text="objects").count() >= 1
    no_errors(browser)


def test_download_as_csv(browser: Browser, portal: Portal) -> None:
    page = browser.open(f"{portal.url}/query")
    page.fill("#sql", SQL + " LIMIT 5")
    with page.expect_download() as done:
        page.get_by_role("button", name="Download CSV").click()
    text = done.value.path().read_text(encoding="utf-8").splitlines()
    assert text[0].replace('"', "") == "diaSourceId,diaObjectId,band,psfFlux" and len(text) == 6
    no_errors(browser)
