"""Run the registered filters over one micro-batch, with the same view names as the lake."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from nightjar.sql import sandbox
from nightjar.sql.engine import empty_views
from nightjar.sql.registry import Filter

log = logging.getLogger(__name__)


@dataclass
class FilterResult:
    filter: Filter
    matches: pa.Table | None
    error: str | None = None


def run_filters(views: dict[str, pa.Table], filters: list[Filter], limits: sandbox.Limits) -> list[FilterResult]:
    """Each filter's matches over the batch; a failing filter reports its error and does not stop the rest."""
    results: list[FilterResult] = []
    if not filters:
        return results
    con = sandbox.connect(empty_views(views), limits)
    try:
        for flt in filters:
            try:
                results.append(FilterResult(flt, sandbox.run(con, flt.sql, limits)))
            except sandbox.QueryError as exc:
                log.warning("filter %s (%s) failed: %s", flt.id, flt.name, exc)
                results.append(FilterResult(flt, None, str(exc)))
    finally:
        con.close()
    return results
