"""The portal's wiring: ``install(app, ...)`` adds the pages, the static files and the HTML error pages to the API
application, so ``nightjar serve`` serves both from one process."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from nightjar.api.auth import auth_state
from nightjar.api.lake_state import Lake
from nightjar.api.web import filter_pages, object_pages, query_page, watch_pages
from nightjar.api.web.session import (
    SESSION_COOKIE,
    PageUser,
    SignInNeeded,
    checked_form,
    set_session,
)
from nightjar.api.web.templating import make_templates, page_headers, render
from nightjar.lake.summary import RATE_COMMITS, holdings
from nightjar.pipelines.watch_history import WatchJobManager
from nightjar.settings import Settings
from nightjar.storage import CatalogsRoot

# Paths that belong to the JSON APIs: their errors stay JSON.
API_PREFIXES = ("/api/", "/lasair/", "/docs", "/redoc", "/openapi.json")


def plotly_js() -> Path:
    """plotly.js as the ``plotly`` package installs it (served from there, never committed here)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def safe_next(target: str | None) -> str:
    """A sign-in's destination: a path on this site only (never ``//other.site`` or ``https://...``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def install(
    app: FastAPI, settings: Settings, db: Engine, watch_jobs: WatchJobManager, watch_files: CatalogsRoot | None = None
) -> None:
    """Add the portal to ``app``: pages, ``/static`` (the portal's CSS and JS), ``/vendor/plotly.min.js``;
    ``watch_files``: where the watch files live (None: ``settings.catalogs``)."""
    app.state.templates = make_templates()
    home = watch_files or settings.catalogs

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(API_PREFIXES):
            return await http_exception_handler(request, exc)
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "www-authenticate"}
        response = render(
            request,
            "error.html",
            {"user": None, "title": f"Error {exc.status_code}", "status": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(API_PREFIXES):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        context = {"user": None, "title": "Bad request", "status": 422, "detail": problems}
        return render(request, "error.html", context, status_code=422)

    @app.exception_handler(SignInNeeded)
    async def sign_in_first(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(f"/signin?next={exc.next_url}", status_code=303)

    pages = APIRouter(include_in_schema=False)

    @pages.get("/vendor/plotly.min.js")
    async def plotly() -> FileResponse:
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @pages.get("/")
    async def home_page(request: Request, user: PageUser, snap: Lake) -> Response:
        held = await run_in_threadpool(holdings, settings.lake, snap.tables)
        context = {"user": user, "title": "Nightjar", "held": held, "rate_commits": RATE_COMMITS}
        return render(request, "home.html", context)

    @pages.get("/signin")
    async def sign_in_page(request: Request, next: str = "/") -> Response:
        # No visitor resolution here: a server without anonymous access sends everyone to this page.
        return render(request, "signin.html", {"user": None, "title": "Sign in", "next": safe_next(next)})

    @pages.post("/signin")
    async def sign_in(request: Request) -> Response:
        form = await checked_form(request)
        token = form.get("token", "").strip()
        target = safe_next(form.get("next"))
        error = "Give your token (nightjar user add NAME prints one)."
        if token:
            try:
                await auth_state(request).resolve(request, f"Token {token}")
            except HTTPException as exc:
                error = "That token is not valid (unknown or revoked)." if exc.status_code == 401 else str(exc.detail)
            else:
                response = RedirectResponse(target, status_code=303)
                set_session(request, response, token)
                return response
        context: dict[str, Any] = {"user": None, "title": "Sign in", "next": target, "error": error}
        return render(request, "signin.html", context)

    @pages.post("/signout")
    async def sign_out(request: Request) -> Response:
        await checked_form(request)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        page_headers(response)
        return response

    pages.include_router(object_pages.router())
    pages.include_router(query_page.router(settings))
    pages.include_router(filter_pages.router(settings, db))
    pages.include_router(watch_pages.router(db, home, watch_jobs))
    app.include_router(pages)
    # follow_symlink: a strict editable install links each file into place.
    static = Path(str(resources.files("nightjar.api.web") / "static"))
    app.mount("/static", StaticFiles(directory=static, follow_symlink=True), name="static")
