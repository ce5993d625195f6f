"""Rendering pages: the Jinja2 templates shipped in this package, and the headers every page carries."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic_core import to_jsonable_python

from nightjar import __version__
from nightjar.api.web.session import CSRF_FIELD, csrf_token, remember_csrf

# Everything a page loads comes from this server: no CDN, no inline script (plotly.js sets inline styles).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)


def _number(value: Any, digits: int = 3) -> str:
    """A number for a table cell: integers as they are, floats to ``digits`` decimals, missing as blank."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data, with NaN and infinities as null (``JSON.parse`` refuses them)."""
    data = to_jsonable_python(value, fallback=str)

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    return clean(data)


def make_templates() -> Jinja2Templates:
    """The portal's templates, loaded from the installed package."""
    env = Environment(loader=PackageLoader("nightjar.api.web", "templates"), autoescape=select_autoescape())
    env.filters["num"] = _number
    env.filters["jsonable"] = jsonable
    env.globals["version"] = __version__
    env.globals["csrf_field"] = CSRF_FIELD
    return Jinja2Templates(env=env)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """The page ``name`` with ``context`` (plus the visitor's CSRF token), with the portal's headers."""
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(
        request, name, {"csrf": csrf_token(request), **context}, status_code=status_code
    )
    remember_csrf(request, response)
    page_headers(response)
    return response


def page_headers(response: Any) -> None:
    """Set the portal's security and caching headers on a page response."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
