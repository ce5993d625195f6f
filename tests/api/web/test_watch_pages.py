"""Watchlist and watchmap pages in a real browser: upload, list, show with a sky map; private ones are 404s."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page

from .conftest import Browser, Portal, no_errors, plot_traces


def test_upload_a_watchlist_and_see_it_on_the_sky(browser: Browser, portal: Portal) -> None:
    rows = portal.objects.sort_by("diaObjectId").slice(0, 3).to_pylist()
    cones = "\n".join(f"{r['ra']},{r['dec']},cone{i}" for i, r in enumerate(rows))
    browser.sign_in(portal, "alice")
    page = browser.open(f"{portal.url}/watchlists")
    page.get_by_role("link", name="Upload a watchlist").click()
    page.get_by_label("Name").fill("three objects")
    page.get_by_label("…or paste the cones").fill("ra,dec,name\n1000,0,bad")
    page.get_by_role("button", name="Upload").click()
    error = page.wait_for_selector("#watch-error")
    assert error is not None and "line" in error.inner_text()
    page.get_by_label("…or paste the cones").fill(cones)
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("#skymap[data-ready='true']")
    list_id = int(re.search(r"/watchlists/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    assert page.locator("#cones tbody tr").count() == 3
    first = page.eval_on_selector_all("#cones tbody tr:first-child td", "tds => tds.map(td => td.textContent)")
    assert first == ["cone0", f"{rows[0]['ra']:.6f}", f"{rows[0]['dec']:.6f}", "default"]
    sky = plot_traces(page, "#skymap")
    assert [t["points"] for t in sky if t["name"] == "cones"] == [3]
    browser.screenshot(page, "watchlist")
    page.goto(f"{portal.url}/watchlists")
    assert page.locator("#watchlists", has_text="three objects").count() == 1
    no_errors(browser)
    # Private: another user gets a 404, as for a list that does not exist.
    browser.context.clear_cookies()
    browser.sign_in(portal, "bob")
    other = browser.open(f"{portal.url}/watchlists/{list_id}")
    assert other.inner_text("#error-detail") == f"no watchlist {list_id}"


def until(page: Page, url: str, condition: str) -> str:
    """Fetch ``url`` from the page until ``condition`` (JavaScript over ``answer`` and its ``text``) holds; the
    text. The browser waits between fetches (pytest-timeout bounds the whole)."""
    text: str = page.evaluate(
        f"""async () => {{
            for (;;) {{
                const answer = await fetch({json.dumps(url)});
                const text = await answer.text();
                if ({condition}) return text;
                await new Promise(resolve => setTimeout(resolve, 200));
            }}
        }}"""
    )
    return text


def upload_watchlist(browser: Browser, portal: Portal, name: str, cones: str, visibility: str) -> int:
    """Upload a watchlist through its form; its id once its history job (matching the lake) has finished."""
    page = browser.open(f"{portal.url}/watchlists/new")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Visibility").select_option(visibility)
    page.get_by_label("…or paste the cones").fill(cones)
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("#skymap[data-ready='true']")
    list_id = int(re.search(r"/watchlists/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    token = portal.tokens["alice"]
    state = until(
        page,
        f"/api/v1/watchlists/{list_id}/history?token={token}",
        "answer.ok && ['done', 'failed'].includes(JSON.parse(text).status)",
    )
    state = json.loads(state)
    assert state["status"] == "done", state
    page.close()
    return list_id


def test_hits_show_on_the_list_and_object_pages_to_those_who_may_see_them(browser: Browser, portal: Portal) -> None:
    rows = portal.objects.sort_by([("nSources", "descending")]).slice(0, 2).to_pylist()
    cones = "\n".join(f"{r['ra']},{r['dec']},star{i}" for i, r in enumerate(rows))
    browser.sign_in(portal, "alice")
    private = upload_watchlist(browser, portal, "alice only", cones, "private")
    public = upload_watchlist(browser, portal, "for everyone", cones, "public")
    # The server reads the lake through a snapshot renewed at most once a second: wait until it shows the hits.
    page = browser.open(f"{portal.url}/watchlists")
    until(page, f"/watchlists/{public}", "answer.ok && !text.includes('No hits yet.')")
    page.goto(f"{portal.url}/watchlists/{public}")
    page.wait_for_selector("#skymap[data-ready='true']")
    hit_objects = set(
        page.eval_on_selector_all("#list-hits tbody tr td:first-child", "tds => tds.map(td => td.textContent)")
    )
    assert hit_objects == {str(r["diaObjectId"]) for r in rows}
    assert [t["points"] for t in plot_traces(page, "#skymap") if t["name"] == "hit objects"] == [2]
    target = f"{portal.url}/objects/{rows[0]['diaObjectId']}"
    mine = browser.open(target)
    lists = set(mine.eval_on_selector_all("#hits a", "links => links.map(a => a.getAttribute('href'))"))
    assert lists == {f"/watchlists/{private}", f"/watchlists/{public}"}
    no_errors(browser)
    browser.context.clear_cookies()
    browser.sign_in(portal, "bob")
    theirs = browser.open(target)
    lists = set(theirs.eval_on_selector_all("#hits a", "links => links.map(a => a.getAttribute('href'))"))
    assert lists == {f"/watchlists/{public}"}
    no_errors(browser)


def test_upload_a_watchmap_circle(browser: Browser, portal: Portal) -> None:
    browser.sign_in(portal, "alice")
    page = browser.open(f"{portal.url}/watchmaps/new")
    page.get_by_label("Name").fill("a circle")
    page.get_by_label("RA (deg)").fill("10.2")
    page.get_by_label("Dec (deg)").fill("-43.8")
    page.get_by_label("Radius (arcsec)").fill("3600")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_selector("#skymap[data-ready='true']")
    assert "circle" in page.inner_text(".facts")
    browser.screenshot(page, "watchmap")
    no_errors(browser)
