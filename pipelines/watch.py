"""The watch stage: every alert of a batch matched against every active watchlist and watchmap, on the batch's
worker, before the lake commit and the filters.

The indexes are cached per worker process (``catalogs.watch_index``, ``catalogs.watchmap``), keyed by each list's
version, so a 10^7-cone watchlist is read and indexed once per worker, not per batch. The hits are committed with
the batch (``commit_hits``: the batch's Kafka offsets as Delta transactions, exactly once) and are the batch's
``watchlist_hits`` and ``area_hits`` views for its streaming filters. Matching a list over the lake's history
(``pipelines.watch_history``) uses the same ``hits_of``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from nightjar import paths
from nightjar.catalogs.skymap_store import SkymapSpec, active_specs
from nightjar.catalogs.standardize import spatial_index
from nightjar.catalogs.watch_index import WatchlistSpec, cached_index, match
from nightjar.catalogs.watch_migrate import watch_root
from nightjar.catalogs.watchmap import WatchmapSpec, cached_area
from nightjar.lake import watch_hits
from nightjar.lake.schemas import AREA_HITS_SCHEMA, MMA_HITS_SCHEMA, WATCHLIST_HITS_SCHEMA
from nightjar.pipelines.context import BatchContext
from nightjar.pipelines.skymap_match import skymap_hits
from nightjar.settings import Settings
from nightjar.sql import watch_registry
from nightjar.storage import Home
from nightjar.streams.decode import DecodedBatch

ALERT_COLUMNS = ["diaObjectId", "diaSourceId", "ra", "dec", "midpointMjdTai"]


@dataclass(frozen=True)
class WatchSet:
    """The active watchlists and watchmaps a batch is matched against (small: it travels with each batch)."""

    watchlists: tuple[WatchlistSpec, ...] = ()
    watchmaps: tuple[WatchmapSpec, ...] = ()
    cache_bytes: int = 4096 << 20
    skymaps: tuple[SkymapSpec, ...] = ()  # the active skymaps (``mma_area_hits``)

    def __bool__(self) -> bool:
        return bool(self.watchlists or self.watchmaps or self.skymaps)


@dataclass
class BatchHits:
    """A batch's hits, as the lake stores them."""

    watchlist_hits: pa.Table = field(default_factory=WATCHLIST_HITS_SCHEMA.empty_table)
    area_hits: pa.Table = field(default_factory=AREA_HITS_SCHEMA.empty_table)
    seconds: float = 0.0
    mma_hits: pa.Table = field(default_factory=MMA_HITS_SCHEMA.empty_table)


def active_watch(settings: Settings, db: Engine) -> WatchSet | None:
    """The active watchlists and watchmaps of the metadata database and the active skymaps of the home; None
    when there are none."""
    root = watch_root(settings)
    lists, maps = watch_registry.active_specs(db, root)
    found = WatchSet(lists, maps, settings.watch_cache_mb << 20, active_specs(root))
    return found if found else None


def alerts_of(sources: pa.Table) -> pa.Table:
    """The positioned alerts of a batch's triggering detections: diaObjectId, diaSourceId, ra, dec, MJD, hpx29."""
    if sources.num_rows == 0 or "ra" not in sources.column_names:
        return pa.table(
            {
                "diaObjectId": pa.array([], pa.int64()),
                "diaSourceId": pa.array([], pa.int64()),
                "ra": pa.array([], pa.float64()),
                "dec": pa.array([], pa.float64()),
                "midpointMjdTai": pa.array([], pa.float64()),
                paths.HPX29: pa.array([], pa.int64()),
            }
        )
    ok = pc.and_(pc.is_valid(sources["ra"]), pc.is_valid(sources["dec"]))
    ok = pc.and_(ok, pc.is_valid(sources["diaSourceId"]))
    rows = sources.filter(ok)
    out = rows.select(ALERT_COLUMNS)
    if paths.HPX29 in rows.column_names:
        return out.append_column(paths.HPX29, rows[paths.HPX29])
    ra = out["ra"].to_numpy(zero_copy_only=False)
    dec = out["dec"].to_numpy(zero_copy_only=False)
    return out.append_column(paths.HPX29, pa.array(spatial_index(ra, dec)))


def hits_of(alerts: pa.Table, watch: WatchSet, context: pa.Table | None = None) -> BatchHits:
    """The hits of ``alerts`` (``alerts_of``) on every list and skymap of ``watch``; ``context``: the objects'
    context rows, whose host distances give skymap hits their 3D density."""
    started = time.perf_counter()
    out = BatchHits()
    if alerts.num_rows == 0 or not watch:
        return out
    ra = alerts["ra"].to_numpy(zero_copy_only=False).astype(np.float64)
    dec = alerts["dec"].to_numpy(zero_copy_only=False).astype(np.float64)
    hpx = alerts[paths.HPX29].to_numpy(zero_copy_only=False).astype(np.int64)
    object_ids = pc.cast(alerts["diaObjectId"], pa.int64())
    source_ids = pc.cast(alerts["diaSourceId"], pa.int64())
    mjd = pc.cast(alerts["midpointMjdTai"], pa.float64())
    tables = []
    for spec in watch.watchlists:
        index = cached_index(spec, watch.cache_bytes)
        found = match(index, ra, dec, hpx)
        if found.alert.size == 0:
            continue
        where = pa.array(found.alert)
        tables.append(
            pa.table(
                {
                    "watchlistId": pa.array(np.full(found.alert.size, spec.id, np.int64)),
                    "coneId": pa.array(index.cone_id[found.cone]),
                    "coneName": index.names.take(pa.array(found.cone)),
                    "diaObjectId": object_ids.take(where),
                    "diaSourceId": source_ids.take(where),
                    "separationArcsec": pa.array(found.separation),
                    "midpointMjdTai": mjd.take(where),
                },
                schema=WATCHLIST_HITS_SCHEMA,
            )
        )
    if tables:
        out.watchlist_hits = pa.concat_tables(tables).combine_chunks()
    areas = []
    for area_spec in watch.watchmaps:
        inside = np.flatnonzero(cached_area(area_spec, watch.cache_bytes).contains(hpx))
        if inside.size == 0:
            continue
        where = pa.array(inside)
        areas.append(
            pa.table(
                {
                    "watchmapId": pa.array(np.full(inside.size, area_spec.id, np.int64)),
                    "diaObjectId": object_ids.take(where),
                    "diaSourceId": source_ids.take(where),
                    "midpointMjdTai": mjd.take(where),
                },
                schema=AREA_HITS_SCHEMA,
            )
        )
    if areas:
        out.area_hits = pa.concat_tables(areas).combine_chunks()
    out.mma_hits = skymap_hits(alerts, watch.skymaps, watch.cache_bytes, context)
    out.seconds = time.perf_counter() - started
    return out


def match_batch(batch: DecodedBatch, watch: WatchSet, context: BatchContext | None = None) -> BatchHits:
    """The watch stage: a located batch's alerts matched against every active list and skymap (runs on the
    batch's worker)."""
    return hits_of(alerts_of(batch.sources), watch, context.view if context is not None else None)


def stored_hits(hits: BatchHits, alerts: pa.Array | pa.ChunkedArray) -> BatchHits:
    """The hits of the alerts the batch stores (``alerts``: their diaSourceId; re-sent alerts were set aside)."""
    return BatchHits(
        watch_hits.keep_alerts(hits.watchlist_hits, alerts),
        watch_hits.keep_alerts(hits.area_hits, alerts),
        hits.seconds,
        watch_hits.keep_alerts(hits.mma_hits, alerts),
    )


def commit_hits(home: Home, hits: BatchHits, txns: dict[str, int], alerts: pa.Array | pa.ChunkedArray) -> None:
    """Append a batch's hits of the alerts it stores (under the lake lock, before ``log_batch``)."""
    kept = stored_hits(hits, alerts)
    watch_hits.append_batch(home, paths.WATCHLIST_HITS, kept.watchlist_hits, txns)
    watch_hits.append_batch(home, paths.AREA_HITS, kept.area_hits, txns)
    watch_hits.append_batch(home, paths.MMA_AREA_HITS, kept.mma_hits, txns)
