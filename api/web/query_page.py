"""The SQL page: an editor with examples and the views' columns, a page of results, and downloads.

Queries run through the query API's own ``run_query`` (the same sandbox, row caps by role and hidden watch hits),
and downloads through its ``file_response`` (CSV or Parquet).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from nightjar.api.auth import auth_state
from nightjar.api.query import file_response, json_page, run_query
from nightjar.api.web.session import PageUser, checked_form
from nightjar.api.web.templating import render
from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.sql.examples import SAMPLE_FILTERS

PAGE_ROWS = 100
EXAMPLES = {
    "newest objects": "SELECT diaObjectId, ra, dec, nSources, lastAlertMjdTai FROM objects "
    "ORDER BY lastAlertMjdTai DESC LIMIT 20",
    "detections per band": "SELECT band, count(*) AS n, avg(psfFlux) AS mean_flux FROM sources GROUP BY band "
    "ORDER BY band",
    "classes": "SELECT classification, count(*) AS n FROM context GROUP BY classification ORDER BY n DESC",
    **{name.replace("_", " "): sql for name, sql in SAMPLE_FILTERS.items()},
}


def view_columns(settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """Each view's columns and types, as a query sees them (empty views included)."""
    out = {}
    for name, data in engine.lake_views(settings).items():
        schema = data.schema if hasattr(data, "schema") else None
        if isinstance(schema, pa.Schema):
            out[name] = [(f.name, str(f.type)) for f in schema]
    return dict(sorted(out.items()))


def _offset(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        raise HTTPException(status_code=400, detail=f"offset must be a whole number, not {text!r}") from None


def router(settings: Settings) -> APIRouter:
    """The portal's query page: the form, a page of results, and downloads as CSV or Parquet."""
    pages = APIRouter(include_in_schema=False)

    def page(request: Request, user: Any, sql: str, result: Any = None, error: str | None = None) -> Response:
        tables = view_columns(settings)
        context = {
            "user": user,
            "title": "Query",
            "sql": sql,
            "examples": EXAMPLES,
            "tables": tables,
            "result": result,
            "error": error,
            "page_rows": PAGE_ROWS,
        }
        return render(request, "query.html", context)

    @pages.get("/query")
    async def query_form(request: Request, user: PageUser, sql: str = "") -> Response:
        return await run_in_threadpool(page, request, user, sql)

    @pages.post("/query")
    async def run(request: Request, user: PageUser) -> Response:
        form = await checked_form(request)
        sql = form.get("sql", "").strip()
        if not sql:
            return await run_in_threadpool(page, request, user, sql, None, "Write a SELECT first.")
        offset = _offset(form.get("offset"))
        try:
            found = await run_in_threadpool(
                run_query, settings, auth_state(request), user, sql, offset, PAGE_ROWS, None
            )
        except HTTPException as exc:
            return await run_in_threadpool(page, request, user, sql, None, str(exc.detail))
        return await run_in_threadpool(page, request, user, sql, json_page(found))

    @pages.post("/query/download")
    async def download(request: Request, user: PageUser) -> Response:
        form = await checked_form(request)
        fmt = form.get("format", "csv")
        if fmt not in ("csv", "parquet"):
            raise HTTPException(status_code=400, detail="format is csv or parquet")
        auth = auth_state(request)
        # As many rows as the query API serves in one page, within the role's cap.
        limit = min(settings.query_page_size * 10, auth.max_rows(user))
        found = await run_in_threadpool(
            run_query, settings, auth, user, form.get("sql", ""), _offset(form.get("offset")), limit, None
        )
        response = file_response(found, fmt)
        response.headers["Content-Disposition"] = f'attachment; filename="nightjar-query.{fmt}"'
        return response

    return pages
