"""The FastAPI application: ``create_app(settings)`` builds it; ``nightjar serve`` runs it with uvicorn."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from nightjar import __version__
from nightjar.settings import Settings
from nightjar.sql import records
from nightjar.sql.engine import query_lake
from nightjar.sql.sandbox import QueryError


class QueryRequest(BaseModel):
    sql: str = Field(description="One SELECT over the lake's views (sources, objects).", min_length=1)


class QueryResponse(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="One object per row; 64-bit IDs as strings.")
    count: int


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Nightjar", version=__version__, description="An alert broker for Rubin/LSST and ZTF.")
    app.state.settings = settings

    @app.post("/api/v1/query", response_model=QueryResponse)
    async def query(request: QueryRequest) -> QueryResponse:
        """Run one SELECT over the lake (sandboxed DuckDB) and return the rows as JSON."""
        try:
            table = await run_in_threadpool(query_lake, settings, request.sql)
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return QueryResponse(columns=table.column_names, rows=records.to_records(table), count=table.num_rows)

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
