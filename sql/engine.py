"""The views users query, over a fresh micro-batch (streaming) or over the lake (static)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from nightjar import paths
from nightjar.lake import read
from nightjar.settings import Settings
from nightjar.sql import sandbox


def limits(settings: Settings, timeout_s: float | None = None) -> sandbox.Limits:
    return sandbox.Limits(
        memory=settings.query_memory_limit,
        threads=settings.query_threads,
        timeout_s=timeout_s or settings.query_timeout_s,
        max_rows=settings.query_max_rows,
        temp_dir=Path(settings.home) / paths.DUCKDB_TEMP_DIR,
        temp_dir_limit=settings.query_temp_dir_limit,
    )


def empty_views(existing: Mapping[str, Any]) -> dict[str, Any]:
    """Every table name users may query, empty where the lake or batch has nothing yet."""
    views = dict(existing)
    for name in paths.TABLES:
        views.setdefault(name, pa.table({"diaObjectId": pa.array([], pa.int64())}))
    return views


def query_lake(settings: Settings, sql: str, as_of: read.AsOf = None) -> pa.Table:
    """Run one user SELECT over the lake's latest state, or over a past one (``as_of``: version or time)."""
    lim = limits(settings)
    try:
        views = read.datasets(Path(settings.home), as_of)
    except read.SnapshotError as exc:
        raise sandbox.QueryError(str(exc)) from None
    con = sandbox.connect(empty_views(views), lim)
    try:
        return sandbox.run(con, sql, lim)
    finally:
        con.close()
