"""One position's context, as ``nightjar context RA DEC`` and the API's context endpoints report it: the class
the context catalogues give it and its ranked matches."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from nightjar.catalogs.catalog import load_catalog_set
from nightjar.catalogs.context import classify
from nightjar.records import to_records
from nightjar.settings import Settings


def context_report(settings: Settings, ra: float, dec: float, names: list[str] | None) -> dict[str, Any]:
    """The class and ranked matches of one position, as a JSON-ready dict."""
    catalogs = load_catalog_set(settings.catalogs, names, cache_mb=settings.catalog_cache_mb)
    result = classify(pa.table({"diaObjectId": pa.array([0], pa.int64()), "ra": [ra], "dec": [dec]}), catalogs)
    row = result.context.to_pylist()[0]
    matches = to_records(result.matches.drop_columns(["diaObjectId"]))
    return {
        "ra": ra,
        "dec": dec,
        "classification": row["classification"],
        "summary": row["summary"],
        "description": row["description"],
        "catalogues": [c.name for c in catalogs.catalogs],
        "catalogs_version": catalogs.version,
        "matches": matches,
    }
