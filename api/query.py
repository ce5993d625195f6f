"""``POST /api/v1/query``: one SELECT over the lake, now or as of a version or time, a page at a time, as JSON
(IDs as strings), CSV or Parquet."""

from __future__ import annotations

import io
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from nightjar.api.auth import Caller, auth_state
from nightjar.settings import Settings
from nightjar.sql import engine, records
from nightjar.sql.parse import QueryError

PARQUET = "application/vnd.apache.parquet"


class QueryRequest(BaseModel):
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
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="One object per row; 64-bit IDs as strings.")
    count: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")


def _csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    return buf.getvalue()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["query"])

    @api.post("/query", response_model=QueryResponse, responses={200: {"content": {"text/csv": {}, PARQUET: {}}}})
    async def query(body: QueryRequest, request: Request, user: Caller) -> Response | QueryResponse:
        """Run one SELECT over the lake in the sandbox; one page in the chosen format (rows capped by role)."""
        as_of = None if body.as_of is None else str(body.as_of)
        try:
            page = await run_in_threadpool(
                engine.query_page,
                settings,
                body.sql,
                body.offset,
                min(body.limit or settings.query_page_size, settings.query_page_size * 10),
                engine.parse_as_of(as_of),
                auth_state(request).max_rows(user),
            )
        except (QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        headers = {"X-Next-Offset": "" if page.next_offset is None else str(page.next_offset)}
        if body.format == "csv":
            return Response(_csv(page.table), media_type="text/csv", headers=headers)
        if body.format == "parquet":
            return Response(_parquet(page.table), media_type=PARQUET, headers=headers)
        return QueryResponse(
            columns=page.table.column_names,
            rows=records.to_records(page.table),
            count=page.table.num_rows,
            offset=page.offset,
            next_offset=page.next_offset,
        )

    return api
