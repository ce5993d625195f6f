"""``POST /api/v1/query``: one SELECT over the lake, now or as of a version or time, a page at a time, as JSON
(IDs as strings), CSV or Parquet."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from pydantic_core import PydanticSerializationError, to_jsonable_python

from nightjar import records
from nightjar.api.auth import Auth, Caller, auth_state
from nightjar.api.users import User
from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.sql.parse import QueryError
from nightjar.sql.watch_views import viewer_of

PARQUET = "application/vnd.apache.parquet"


class QueryRequest(BaseModel):
    """A query over the lake, and the page of its result to return."""

    sql: str = Field(
        description="One SELECT over the views (sources, objects, forced_sources, context…).", min_length=1
    )
    format: Literal["json", "csv", "parquet"] = "json"
    offset: int = Field(default=0, ge=0, description="First row of the page (add ORDER BY for stable pages).")
    limit: int | None = Field(default=None, ge=1, description="Rows per page (default: the server's page size).")
    as_of: str | int | None = Field(
        default=None, description="A lake version (12) or a UTC time (2025-09-05T12:00:00Z)."
    )


class QueryResponse(BaseModel):
    """One page of a query's result as JSON."""

    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="One object per row; 64-bit IDs as strings.")
    count: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")


def _written(table: pa.Table, write: Callable[[pa.Table, io.BytesIO], None]) -> bytes:
    """``table`` in a format; a column the writer refuses is written as its text, and one that still fails is
    a 400 that names it."""
    for _attempt in range(2):
        buf = io.BytesIO()
        try:
            write(table, buf)
            return buf.getvalue()
        except (pa.ArrowException, OverflowError, ValueError):
            bad = [i for i in range(table.num_columns) if not _writes(table.select([i]), write)]
            if not bad:
                break
            for index in bad:
                table = records.as_text(table, index)
    names = ", ".join(table.column_names)
    raise HTTPException(status_code=400, detail=f"these columns cannot be written in this format: {names}")


def _writes(table: pa.Table, write: Callable[[pa.Table, io.BytesIO], None]) -> bool:
    try:
        write(table, io.BytesIO())
    except (pa.ArrowException, OverflowError, ValueError):
        return False
    return True


def _csv(table: pa.Table) -> bytes:
    return _written(records.for_csv(table), lambda t, buf: pcsv.write_csv(t, buf))


def _parquet(table: pa.Table) -> bytes:
    return _written(table, lambda t, buf: pq.write_table(t, buf))


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts; values JSON has no form for (intervals, big numbers) as text."""
    rows = records.to_records(table)
    try:
        to_jsonable_python(rows)
    except (PydanticSerializationError, TypeError, ValueError):
        for index in range(table.num_columns):
            try:
                to_jsonable_python(records.to_records(table.select([index])))
            except (PydanticSerializationError, TypeError, ValueError):
                table = records.as_text(table, index)
        rows = records.to_records(table)
    return rows


def run_query(
    settings: Settings,
    auth: Auth,
    user: User,
    sql: str,
    offset: int = 0,
    limit: int | None = None,
    as_of: str | int | None = None,
) -> engine.Page:
    """One page of a user's SELECT over the lake, as the caller may see it (rows capped by role); a 400 for bad
    SQL. The query API and the portal's query page both run queries through this."""
    try:
        return engine.query_page(
            settings,
            sql,
            offset,
            min(limit or settings.query_page_size, settings.query_page_size * 10),
            engine.parse_as_of(None if as_of is None else str(as_of)),
            auth.max_rows(user),
            viewer_of(user.name, user.anonymous, user.is_admin),
        )
    except (QueryError, ValueError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def file_response(page: engine.Page, format: str) -> Response:
    """A page of results as a CSV or Parquet response (``X-Next-Offset``: the next page's offset, or empty)."""
    headers = {"X-Next-Offset": "" if page.next_offset is None else str(page.next_offset)}
    if format == "csv":
        return Response(_csv(page.table), media_type="text/csv", headers=headers)
    return Response(_parquet(page.table), media_type=PARQUET, headers=headers)


def json_page(page: engine.Page) -> QueryResponse:
    """A page of a query's result as the JSON response."""
    return QueryResponse(
        columns=page.table.column_names,
        rows=_json_rows(page.table),
        count=page.table.num_rows,
        offset=page.offset,
        next_offset=page.next_offset,
    )


def router(settings: Settings) -> APIRouter:
    """The route that runs one query over the lake in the sandbox."""
    api = APIRouter(prefix="/api/v1", tags=["query"])

    @api.post("/query", response_model=QueryResponse, responses={200: {"content": {"text/csv": {}, PARQUET: {}}}})
    async def query(body: QueryRequest, request: Request, user: Caller) -> Response | QueryResponse:
        """Run one SELECT over the lake in the sandbox; one page in the chosen format (rows capped by role)."""
        page = await run_in_threadpool(
            run_query, settings, auth_state(request), user, body.sql, body.offset, body.limit, body.as_of
        )
        if body.format in ("csv", "parquet"):
            return file_response(page, body.format)
        return json_page(page)

    return api
