"""Signing in and out, the session cookie, CSRF checks of posted forms, and what every page loads (this server only)."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.api.web.session import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE
from nightjar.settings import Settings

from .conftest import Browser, Portal, no_errors

PAGES = ["/", "/query", "/filters", "/watchlists", "/signin"]


def test_sign_in_with_a_bad_token_shows_an_error(browser: Browser, portal: Portal) -> None:
    page = browser.open(f"{portal.url}/signin")
    page.get_by_label("Token").fill("nj_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    error = page.wait_for_selector("#signin-error")
    assert error is not None and "not valid" in error.inner_text()
    assert page.locator("#signed-in-as").count() == 0
    assert not [c for c in browser.context.cookies() if c["name"] == SESSION_COOKIE]
    browser.screenshot(page, "signin-error")
    no_errors(browser)


def test_sign_in_keeps_the_token_in_a_secure_http_only_strict_cookie_and_sign_out_drops_it(
    browser: Browser, portal: Portal
) -> None:
    browser.sign_in(portal, "alice")
    (cookie,) = [c for c in browser.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["value"] == portal.tokens["alice"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page = browser.open(f"{portal.url}/filters")
    assert page.inner_text("#signed-in-as").startswith("alice")
    # Scripts cannot read it.
    assert SESSION_COOKIE not in page.evaluate("document.cookie")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#signin-link")
    assert not [c for c in browser.context.cookies() if c["name"] == SESSION_COOKIE]
    no_errors(browser)


def test_pages_load_only_from_this_server_and_have_titles(browser: Browser, portal: Portal) -> None:
    for path in PAGES:
        page = browser.open(f"{portal.url}{path}")
        assert page.title().endswith("· Nightjar")
        sources = page.eval_on_selector_all("script[src], link[href], img[src]", "els => els.map(e => e.src || e.href)")
        assert sources and all(s.startswith(portal.url) for s in sources), sources
        # Every form field has a label.
        unlabelled = page.eval_on_selector_all(
            "input:not([type=hidden]), select, textarea",
            "els => els.filter(e => !e.labels || e.labels.length === 0).map(e => e.name)",
        )
        assert unlabelled == [], (path, unlabelled)
        page.close()
    no_errors(browser)


def _form_token(portal: Portal) -> str:
    """A CSRF token as a page hands it out: in the form and in the cookie."""
    page = httpx.get(f"{portal.url}/signin", timeout=60)
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page.text)
    assert found is not None and page.cookies.get(CSRF_COOKIE) == found.group(1)
    return found.group(1)


def test_forms_posted_without_the_csrf_token_or_from_another_site_are_refused(portal: Portal) -> None:
    token = _form_token(portal)
    # (httpx keeps Secure cookies from plain-HTTP requests: the test sends both cookies itself.)
    cookies = {SESSION_COOKIE: portal.tokens["alice"], CSRF_COOKIE: token}
    with httpx.Client(cookies=cookies, timeout=60) as client:
        form = {"name": "csrf probe", "sql": "SELECT diaObjectId FROM sources", "visibility": "public"}
        missing = client.post(f"{portal.url}/filters/new", data=form)
        assert missing.status_code == 403 and "security token" in missing.text
        wrong = client.post(f"{portal.url}/filters/new", data={**form, CSRF_FIELD: "guess"})
        assert wrong.status_code == 403
        foreign = client.post(
            f"{portal.url}/filters/new",
            data={**form, CSRF_FIELD: token},
            headers={"Origin": "https://evil.example.org"},
        )
        assert foreign.status_code == 403 and "another site" in foreign.text
        mine = client.post(
            f"{portal.url}/filters/new", data={**form, CSRF_FIELD: token}, headers={"Origin": portal.url}
        )
        assert mine.status_code == 303 and mine.headers["location"].startswith("/filters/")
    listed = httpx.get(f"{portal.url}/api/v1/filters", timeout=60).json()
    assert [f["name"] for f in listed if f["owner"] == "alice" and f["name"] == "csrf probe"] == ["csrf probe"]


def test_a_page_that_needs_a_user_sends_visitors_to_sign_in(portal: Portal) -> None:
    answer = httpx.get(f"{portal.url}/filters/new", timeout=60)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/filters/new"
    # Only paths on this site are followed after signing in.
    page = httpx.get(f"{portal.url}/signin", params={"next": "//evil.example.org/"}, timeout=60)
    assert 'name="next" value="/"' in page.text


def test_sign_in_by_keyboard_alone(browser: Browser, portal: Portal) -> None:
    page = browser.open(portal.url)
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.focus("#signin-link")
    page.keyboard.press("Enter")
    page.wait_for_selector("#token")
    assert page.evaluate("document.activeElement.id") == "token"  # the form's one field has the focus
    page.keyboard.type(portal.tokens["bob"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#signed-in-as")
    assert page.inner_text("#signed-in-as").startswith("bob")
    no_errors(browser)


def test_pages_fit_a_phone(browser: Browser, portal: Portal) -> None:
    page = browser.open(portal.url)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ["/", "/query", "/filters"]:
        page.goto(f"{portal.url}{path}")
        # Nothing wider than the screen but tables, which scroll in their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    browser.screenshot(page, "phone-filters")
    no_errors(browser)


def test_without_anonymous_access_every_page_asks_for_a_token(settings: Settings) -> None:
    closed = settings.model_copy(update={"allow_anonymous": False})
    token = add_user_token(closed, "carol")
    with TestClient(create_app(closed)) as client:
        for path in ["/", "/query", "/objects/1", "/filters"]:
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"] == f"/signin?next={path}", path
        assert client.get("/signin").status_code == 200  # the sign-in page itself is open
        assert client.get("/static/portal.css").status_code == 200
        client.cookies.set(SESSION_COOKIE, token)
        assert client.get("/", follow_redirects=False).status_code == 200
