"""Matching a newly added skymap over the lake's history: every stored alert inside its window is matched with the
live stage's code (``pipelines.skymap_match``) and the map's ``mma_area_hits`` rows are replaced in one commit,
keeping the hits live batches committed meanwhile (as ``pipelines.watch_history`` does for watchmaps).

Only the alerts within the map's window are read: the time bound is pushed into the lake scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.catalogs.skymap import Skymap
from nightjar.catalogs.skymap_store import SkymapInfo, SkymapSpec, add_skymap, remove_skymap, spec_of
from nightjar.lake import mma_hits, read
from nightjar.lake.schemas import MMA_HITS_SCHEMA
from nightjar.pipelines.skymap_match import skymap_hits
from nightjar.pipelines.watch import alerts_of
from nightjar.pipelines.watch_history import CHUNK_ROWS, READ_COLUMNS
from nightjar.storage import CatalogsHome, Home

Progress = Callable[[int, int], None]  # (alerts done, alerts in all)
CACHE_BYTES = 1 << 30


@dataclass
class SkymapHistoryResult:
    """What matching a skymap over the lake's history found."""

    alerts: int  # alerts of the lake in the map's window
    hits: int  # hits found in them
    stored: int  # hits the map has now (with live hits committed meanwhile)


def match_skymap_history(home: Home, spec: SkymapSpec, progress: Progress | None = None) -> SkymapHistoryResult:
    """Match one stored skymap over every alert of the lake inside its window and store its hits (``home``: the
    lake, as ``Settings.lake`` or a home folder)."""
    since = read.snapshot(home).get(paths.MMA_AREA_HITS)
    sources = read.datasets(home).get(paths.SOURCES)
    found: list[pa.Table] = []
    done = total = 0
    if sources is not None:
        mjd = ds.field("midpointMjdTai")
        alerts = (
            (ds.field(paths.FROM_HISTORY) == False)  # noqa: E712 - a dataset expression, not a comparison
            & (mjd >= spec.event_mjd)
            & (mjd <= spec.window_end_mjd)
        )
        total = sources.count_rows(filter=alerts)
        if progress is not None:
            progress(0, total)
        columns = [c for c in READ_COLUMNS if c in sources.schema.names]
        for chunk in sources.to_batches(columns=columns, filter=alerts, batch_size=CHUNK_ROWS):
            rows = alerts_of(pa.Table.from_batches([chunk]))
            ids = pc.unique(pc.drop_null(rows["diaObjectId"])).to_numpy(zero_copy_only=False).astype(np.int64)
            context = read.rows_of_objects(home, paths.CONTEXT, ids) if ids.size else None
            found.append(skymap_hits(rows, (spec,), CACHE_BYTES, context))
            done += chunk.num_rows
            if progress is not None:
                progress(done, total)
    hits = pa.concat_tables(found) if found else MMA_HITS_SCHEMA.empty_table()
    stored = mma_hits.replace_map(home, spec.id, hits, since)
    return SkymapHistoryResult(done, hits.num_rows, stored)


def ingest_skymap(
    home: CatalogsHome,
    skymap: Skymap,
    history: bool = True,
    progress: Progress | None = None,
    lake: Home | None = None,
    **options: Any,
) -> tuple[SkymapInfo, SkymapHistoryResult | None]:
    """Store a checked skymap (``catalogs.skymap_store.add_skymap`` ``options``) under ``home`` and, unless
    ``history`` is False, match it over the lake's history at once (``lake``: ``Settings.lake``; None: the home's
    own lake). The live pipeline matches it from its next batch."""
    info = add_skymap(home, skymap, **options)
    hits_in = watch_store.lake_for(home, lake)
    result = match_skymap_history(hits_in, spec_of(home, info), progress) if history else None
    return info, result


def drop_skymap(home: CatalogsHome, map_id: int, lake: Home | None = None) -> None:
    """Remove a stored skymap and its hits (in ``lake``; None: the home's own lake)."""
    hits_in = watch_store.lake_for(home, lake)
    remove_skymap(home, map_id)
    mma_hits.forget_map(hits_in, map_id)
