"""Who sees which hits: a private (or group) watchlist's or watchmap's hits are its owner's alone, as its cones are.

Over the lake, a user's query reads ``watchlist_hits`` and ``area_hits`` without the rows of other users' private
lists (``visible_hits``); in a streaming batch, each filter sees the hits its owner may see (``pipelines.watch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow.dataset as ds

from nightjar import paths
from nightjar.sql import registry, watch_registry


def viewer_of(name: str, anonymous: bool, admin: bool) -> str | None:
    """The ``viewer`` of a caller: None for admins (everything), ``""`` for anonymous callers, else the name."""
    if admin:
        return None
    return "" if anonymous else name


def visible_hits(views: Mapping[str, Any], metadata_url: str, viewer: str) -> dict[str, Any]:
    """``views`` with the hit tables (datasets) filtered to the lists ``viewer`` may see."""
    out = dict(views)
    eng = registry.engine(metadata_url)
    try:
        lists, maps = watch_registry.hidden_from(eng, viewer)
    finally:
        eng.dispose()
    for table, hidden, column in (
        (paths.WATCHLIST_HITS, lists, "watchlistId"),
        (paths.AREA_HITS, maps, "watchmapId"),
    ):
        data = out.get(table)
        if hidden and isinstance(data, ds.Dataset):
            out[table] = data.filter(~ds.field(column).isin(hidden))
    return out
