"""The ``mma_area_hits`` lake table (Lasair's name): alerts inside a skymap's 90 % credible region, within its
active window after the event.

One row per (skymap, alert): ``contour`` is the smallest credible level holding the position (50 or 90),
``probdens2`` the map's probability density there (sr⁻¹), ``probdens3`` the 3D density (Mpc⁻³ sr⁻¹) at the
object's host distance when its context gives one. Live matching appends a batch's hits with the batch's commit
(exactly once, like ``area_hits``); matching a newly added map over the history replaces that map's rows in one
commit, keeping the live hits batches committed meanwhile.
"""

from __future__ import annotations

import pyarrow as pa

from nightjar import paths
from nightjar.lake import commit, watch_hits
from nightjar.lake.schemas import MMA_HITS_SCHEMA
from nightjar.storage import Home

__all__ = ["MMA_HITS_SCHEMA", "append_batch", "forget_map", "replace_map", "rows_of_map"]

MAP_COLUMN = watch_hits.LIST_COLUMN[paths.MMA_AREA_HITS]


def append_batch(home: Home, hits: pa.Table, txns: dict[str, int]) -> bool:
    """A batch's skymap hits, appended with its transactions (under the lake lock, before ``log_batch``)."""
    if hits.num_rows == 0:
        return False
    return commit.append(home, paths.MMA_AREA_HITS, hits.cast(MMA_HITS_SCHEMA), txns)


def replace_map(home: Home, map_id: int, hits: pa.Table, since_version: int | None) -> int:
    """Replace every stored hit of one map by ``hits`` (matched over the lake as of ``since_version``)."""
    return watch_hits.replace_list(home, paths.MMA_AREA_HITS, map_id, hits, since_version)


def forget_map(home: Home, map_id: int) -> None:
    """Remove every hit of a removed map."""
    watch_hits.forget_list(home, paths.MMA_AREA_HITS, map_id)


def rows_of_map(home: Home, map_id: int) -> pa.Table:
    """The mma_area_hits rows of one skymap."""
    return watch_hits.rows_of_list(home, paths.MMA_AREA_HITS, map_id)
