"""Static queries: one user SELECT over the lake's views, now or as of a past version or time, page by page.

The lake tables are Arrow datasets over the Delta tables (DuckDB reads only the files and columns a query
needs); the views the lake lacks are typed empty placeholders, as in streaming mode, so the same SQL runs in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from nightjar import memory_cap, paths
from nightjar.lake import read
from nightjar.settings import Settings
from nightjar.sql import isolated, parse, sandbox, views, watch_views

AsOf = int | datetime | None


def limits(settings: Settings, timeout_s: float | None = None, max_rows: int | None = None) -> sandbox.Limits:
    """The sandbox limits of the settings (a filter pass uses ``filter_timeout_s``, a static query the default)."""
    return sandbox.Limits(
        memory=settings.query_memory_limit,
        threads=settings.query_threads,
        timeout_s=timeout_s or settings.query_timeout_s,
        max_rows=max_rows or settings.query_max_rows,
        temp_dir=Path(settings.home) / paths.DUCKDB_TEMP_DIR,
        temp_dir_limit=settings.query_temp_dir_limit,
    )


def role_rows(settings: Settings, role: str) -> int:
    """The most rows a static query of a user role may return."""
    try:
        return settings.role_max_rows[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}: the roles are {', '.join(settings.role_max_rows)}") from None


def parse_as_of(text: str | None) -> AsOf:
    """``--as-of`` as given: a lake version (an integer) or an ISO 8601 time (UTC unless it says otherwise).

    Examples
    --------
    >>> parse_as_of("12"), parse_as_of("2025-09-05T12:00:00")
    (12, datetime.datetime(2025, 9, 5, 12, 0, tzinfo=datetime.timezone.utc))
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--as-of takes a lake version (12) or a time (2025-09-05T12:00:00Z), not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def lake_views(settings: Settings, as_of: AsOf = None, viewer: str | None = None) -> dict[str, Any]:
    """Every view name over the lake (one snapshot: a lake version or a time), empty placeholders where the lake
    has nothing. ``viewer``: the user the query runs for (``""``: anonymous), who does not see the hits of other
    users' private watchlists and watchmaps; None: everything (the operator, admins)."""
    try:
        found = views.with_placeholders(read.datasets_as_of(settings.lake, as_of))
    except read.SnapshotError as exc:
        raise sandbox.QueryError(str(exc)) from None
    if viewer is not None:
        found = watch_views.visible_hits(found, settings.metadata_url, viewer)
    return found


@dataclass(frozen=True)
class Page:
    """One page of a result: its rows and where the next page starts (None: this was the last)."""

    table: pa.Table
    offset: int
    next_offset: int | None


def precheck(sql: str) -> None:
    """Refuse SQL the parse check refuses before a child process is started for it (a few ms, no lake)."""
    con = duckdb.connect(":memory:")
    try:
        parse.validate(parse.parse(con, sql), (*views.VIEW_NAMES, *paths.TABLES))
    finally:
        con.close()


def query_lake(
    settings: Settings,
    sql: str,
    as_of: AsOf = None,
    max_rows: int | None = None,
    timeout_s: float | None = None,
    viewer: str | None = None,
) -> pa.Table:
    """Run one user SELECT over the lake (in a child process that is killed at the time limit, unless
    ``query_isolation`` is off); a QueryError that points at the problem otherwise. ``viewer``: as ``lake_views``."""
    if settings.query_isolation:
        precheck(sql)
        return isolated.call(
            _query_lake_here,
            (settings, sql, as_of, max_rows, timeout_s, viewer),
            timeout_s or settings.query_timeout_s,
            memory_cap.query_process_cap(settings),
        )
    return _query_lake_here(settings, sql, as_of, max_rows, timeout_s, viewer)


def _query_lake_here(
    settings: Settings,
    sql: str,
    as_of: AsOf = None,
    max_rows: int | None = None,
    timeout_s: float | None = None,
    viewer: str | None = None,
) -> pa.Table:
    lim = limits(settings, timeout_s=timeout_s, max_rows=max_rows)
    box = sandbox.connect(lake_views(settings, as_of, viewer), lim)
    try:
        return sandbox.run(box, sql, lim)
    finally:
        box.close()


def query_page(
    settings: Settings,
    sql: str,
    offset: int = 0,
    size: int | None = None,
    as_of: AsOf = None,
    max_rows: int | None = None,
    viewer: str | None = None,
) -> Page:
    """Rows ``offset`` to ``offset + size`` of a user SELECT (give it an ORDER BY for pages that do not shift),
    in a child process as ``query_lake``. ``viewer``: as ``lake_views``."""
    if settings.query_isolation:
        precheck(sql)
        return isolated.call(
            _query_page_here,
            (settings, sql, offset, size, as_of, max_rows, viewer),
            settings.query_timeout_s,
            memory_cap.query_process_cap(settings),
        )
    return _query_page_here(settings, sql, offset, size, as_of, max_rows, viewer)


def _query_page_here(
    settings: Settings,
    sql: str,
    offset: int = 0,
    size: int | None = None,
    as_of: AsOf = None,
    max_rows: int | None = None,
    viewer: str | None = None,
) -> Page:
    size = size or settings.query_page_size
    cap = max_rows or settings.query_max_rows
    if offset < 0 or size < 1:
        raise ValueError("offset must be >= 0 and the page size >= 1")
    if offset + size > cap:
        raise ValueError(f"rows beyond {cap} are not served to this role: narrow the query or submit a job")
    lim = limits(settings, max_rows=size + 1)
    box = sandbox.connect(lake_views(settings, as_of, viewer), lim)
    try:
        parsed = sandbox.check(box, sql)
        # New lines around the query: a trailing -- comment in it cannot swallow the paging clause.
        paged = f"SELECT * FROM (\n{parsed.sql}\n) AS __nj_page LIMIT {size + 1} OFFSET {offset}"
        table = sandbox.execute(box, paged, lim)
    finally:
        box.close()
    more = table.num_rows > size
    return Page(table.slice(0, size), offset, offset + size if more else None)
