"""Who is calling, and may they: tokens to users, per-token rate limits, role checks.

``Authorization: Token <token>`` (Lasair's form), ``Authorization: Bearer <token>``, or the query parameter
``?token=<token>`` (Lasair's documented GET form). No token: the anonymous role, when the Settings allow it. A
token that matches nobody (or an empty one) is a 401, never a silent downgrade to anonymous.
Rate limits are a sliding one-minute window per token (per client address for anonymous callers), kept in the
serving process: run one API process per limit domain, or put the limit in the proxy in front.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, APIKeyQuery
from sqlalchemy.engine import Engine

from nightjar.api import users
from nightjar.api.users import ADMIN, ANONYMOUS_USER, User
from nightjar.settings import Settings

WINDOW_S = 60.0
# Documented in OpenAPI as an API key in the Authorization header ("Token <token>").
_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="`Token <token>` (Lasair style) or `Bearer <token>`; `nightjar user add` makes tokens.",
)


_query = APIKeyQuery(
    name="token",
    auto_error=False,
    description="the token as a query parameter (Lasair's GET form); the Authorization header is preferred",
)


def query_token(value: str | None, header: str | None) -> str | None:
    """The ``?token=`` value as an Authorization header value, checked against the header when both are sent.

    Examples
    --------
    >>> query_token("abc", None), query_token(None, "Token abc"), query_token("abc", "Token abc")
    ('Token abc', 'Token abc', 'Token abc')
    """
    if value is None:
        return header
    if not value.strip():
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="the token query parameter is empty",
            headers={"WWW-Authenticate": "Token"},
        )
    if header is not None and parse_authorization(header) != value.strip():
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail="two different tokens: the Authorization header and ?token= disagree",
        )
    return f"Token {value.strip()}"


class RateLimiter:
    """At most ``limit`` calls in any one-minute window per key; thread-safe."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, limit: int) -> float | None:
        """Record a call; None if allowed, else the seconds until one is."""
        if limit <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= WINDOW_S:
                calls.popleft()
            if len(calls) >= limit:
                return WINDOW_S - (now - calls[0])
            calls.append(now)
            return None


def parse_authorization(value: str | None) -> str | None:
    """The token in an Authorization header value, or None when there is no header."""
    if value is None or not value.strip():
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="the Authorization header must be 'Token <token>' or 'Bearer <token>'",
            headers={"WWW-Authenticate": "Token"},
        )
    return token.strip()


class Auth:
    """The app's authentication state: the users' database, the rate limiter and the limits per role."""

    def __init__(self, settings: Settings, eng: Engine) -> None:
        self.settings = settings
        self.engine = eng
        self.limiter = RateLimiter()

    def limit_for(self, role: str) -> int:
        """The requests per minute the role may make (0: no limit)."""
        return self.settings.role_requests_per_minute.get(role, 0)

    def max_rows(self, user: User) -> int:
        """The most rows a query of this user returns (the anonymous limit for a role without its own)."""
        return self.settings.role_max_rows.get(user.role, self.settings.role_max_rows.get("anonymous", 1000))

    async def resolve(self, request: Request, header: str | None) -> User:
        """The caller of a request from its ``Authorization`` header (anonymous without one, when the server allows it),
        counted against its role's rate limit: a 401 for a missing, malformed or revoked token, a 429 past the limit."""
        token = parse_authorization(header)
        if token is None:
            if not self.settings.allow_anonymous:
                raise HTTPException(
                    status_code=status.HTTP_401_UNAUTHORIZED,
                    detail="this server needs a token: send 'Authorization: Token <token>'",
                    headers={"WWW-Authenticate": "Token"},
                )
            user, key = ANONYMOUS_USER, f"addr:{request.client.host if request.client else '?'}"
        else:
            found = await run_in_threadpool(users.authenticate, self.engine, token)
            if found is None:
                raise HTTPException(
                    status_code=status.HTTP_401_UNAUTHORIZED,
                    detail="invalid or revoked token",
                    headers={"WWW-Authenticate": "Token"},
                )
            user, key = found, f"user:{found.id}"
        wait = self.limiter.check(key, self.limit_for(user.role))
        if wait is not None:
            limit = self.limit_for(user.role)
            raise HTTPException(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"rate limit: {limit} requests per minute for the {user.role} role; retry in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        return user


def auth_state(request: Request) -> Auth:
    """The app's authentication state."""
    auth: Auth = request.app.state.auth
    return auth


async def caller(
    request: Request,
    header: Annotated[str | None, Depends(_header)],
    _documented: Annotated[str | None, Depends(_query)] = None,
) -> User:
    """FastAPI dependency: the calling user (anonymous without a token), after the rate limit."""
    # The raw parameter, not the dependency's value: APIKeyQuery turns an empty ?token= into None (anonymous).
    token = request.query_params.get("token")
    return await auth_state(request).resolve(request, query_token(token, header))


def require(*roles: str) -> Callable[..., object]:
    """A dependency that admits only the given roles (admins always), returning the user."""

    async def dependency(user: Annotated[User, Depends(caller)]) -> User:
        if user.role in roles or user.role == ADMIN:
            return user
        if user.anonymous:
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="this call needs a token: send 'Authorization: Token <token>'",
                headers={"WWW-Authenticate": "Token"},
            )
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"the {user.role} role may not do this (needs {' or '.join(roles)})",
        )

    return dependency


SIGNED_IN = (users.USER, users.POWER, users.ANNOTATOR)
# Route parameter types: ``user: Caller`` (anyone, anonymous included) or ``user: SignedIn`` (a token).
Caller = Annotated[User, Depends(caller)]
SignedIn = Annotated[User, Depends(require(*SIGNED_IN))]


class _Owned(Protocol):
    @property
    def owner(self) -> str: ...


Owned = TypeVar("Owned", bound=_Owned)


def owned(item: Owned | None, user: User, absent: str) -> Owned:
    """``item`` (a job, an export) when ``user`` owns it or is an admin; else 404 with ``absent``: another user's item
    is as absent as a missing one."""
    if item is None or not (user.is_admin or item.owner == user.name):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=absent)
    return item
