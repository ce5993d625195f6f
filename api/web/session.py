"""Who is looking at a page: the token kept in a cookie, and the CSRF check of forms posted from pages.

Signing in stores the user's API token in an HTTP-only, ``Secure``, ``SameSite=Strict`` cookie; each page resolves
it through the API's own ``Auth`` (same users, roles and rate limits). A cookie whose token was revoked is
dropped and the page is served to an anonymous visitor.

CSRF: cookies travel with requests other sites make, so every form posted from a page carries a token that must
equal a random ``nightjar_csrf`` cookie (double submit: another site can neither read the cookie nor set the
field), and a request whose ``Origin`` header names another site is refused before the form is read.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response, status

from nightjar.api.auth import auth_state
from nightjar.api.users import User

SESSION_COOKIE = "nightjar_session"
CSRF_COOKIE = "nightjar_csrf"
CSRF_FIELD = "csrf_token"
SESSION_DAYS = 30


class SignInNeeded(Exception):
    """The page needs a signed-in user (``pages`` turns it into a redirect to the sign-in page)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def page_user(request: Request) -> User:
    """The visitor: the user of the session cookie's token, else anonymous (when the server allows it)."""
    auth = auth_state(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            return await auth.resolve(request, f"Token {token}")
        except HTTPException as exc:
            if exc.status_code != status.HTTP_401_UNAUTHORIZED:
                raise
            request.state.drop_session = True  # revoked or unknown: forget it, go on as anonymous
    if not auth.settings.allow_anonymous:
        raise SignInNeeded(request.url.path)
    return await auth.resolve(request, None)


async def signed_in_user(user: Annotated[User, Depends(page_user)], request: Request) -> User:
    """The visitor, who must be signed in."""
    if user.anonymous:
        raise SignInNeeded(request.url.path)
    return user


PageUser = Annotated[User, Depends(page_user)]
SignedInPage = Annotated[User, Depends(signed_in_user)]


def csrf_token(request: Request) -> str:
    """This visitor's CSRF token: the cookie's, or a new one (``remember_csrf`` sets it on the response)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token:
        return token
    fresh: str | None = getattr(request.state, "new_csrf", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.new_csrf = fresh
    return fresh


def secure_cookies(request: Request) -> bool:
    """Cookies are ``Secure`` except over plain HTTP to a host that is not this machine (browsers refuse a
    Secure cookie there, so sign-in could never work; put HTTPS in front of a portal others reach)."""
    return request.url.scheme == "https" or (request.url.hostname or "") in ("127.0.0.1", "localhost", "::1")


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie made for this request, and drop a session cookie found stale."""
    fresh = getattr(request.state, "new_csrf", None)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE, fresh, httponly=True, secure=secure_cookies(request), samesite="strict", path="/"
        )
    if getattr(request.state, "drop_session", False):
        response.delete_cookie(SESSION_COOKIE, path="/")


def set_session(request: Request, response: Response, token: str) -> None:
    """Set the session cookie holding ``token`` on the response (HTTP only, strict same-site, ``Secure`` as
    ``secure_cookies`` decides)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        secure=secure_cookies(request),
        samesite="strict",
        path="/",
    )


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (or, without one, ``Referer``) is this site; True when neither is sent."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return claimed is None
    parts = urlsplit(claimed)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form's text fields after the CSRF checks (403 when they fail); files are in ``request.form()``."""
    if not same_origin(request):
        raise HTTPException(status_code=403, detail="this form was posted from another site")
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(status_code=403, detail="the form's security token is missing or stale: reload the page")
    return {k: v for k, v in form.items() if isinstance(v, str)}
