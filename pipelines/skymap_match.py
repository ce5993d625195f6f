"""Matching alerts against skymaps: which alerts of a batch lie in a map's 90 % credible region, after its event
and inside its active window, with the contour, the density there and the 3D density at the host's distance.

Whole Arrow columns at a time: a binary search of each alert's order-29 HEALPix index among the map's sorted
cells and region ranges (``catalogs.skymap.SkymapIndex``), no per-alert Python. A map whose window the batch's
alert times do not reach costs two comparisons and is not even read.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.catalogs.skymap_store import SkymapSpec, cached_index
from nightjar.lake.schemas import MMA_HITS_SCHEMA

DISTANCE_COLUMN = "distance"  # the context's host distance, Mpc


def host_distances(object_ids: pa.Array | pa.ChunkedArray, context: pa.Table | None) -> np.ndarray:
    """The host distance (Mpc) of each object from its context row; NaN where there is none."""
    out = np.full(len(object_ids), np.nan)
    if context is None or context.num_rows == 0 or DISTANCE_COLUMN not in context.column_names:
        return out
    known = context.filter(pc.is_valid(context[DISTANCE_COLUMN]))
    if known.num_rows == 0:
        return out
    where = pc.index_in(object_ids, value_set=known["diaObjectId"])
    found = pc.is_valid(where).to_numpy(zero_copy_only=False)
    at = pc.fill_null(where, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    distances = pc.cast(known[DISTANCE_COLUMN], pa.float64()).to_numpy(zero_copy_only=False)
    out[found] = distances[at[found]]
    return out


def skymap_hits(
    alerts: pa.Table, skymaps: tuple[SkymapSpec, ...], cache_bytes: int, context: pa.Table | None = None
) -> pa.Table:
    """The ``mma_area_hits`` rows of ``alerts`` (``pipelines.watch.alerts_of``) on every map of ``skymaps``.

    ``context``: rows with ``diaObjectId`` and ``distance`` (Mpc) giving host distances for ``probdens3``.
    """
    if alerts.num_rows == 0 or not skymaps:
        return MMA_HITS_SCHEMA.empty_table()
    mjd = pc.cast(alerts["midpointMjdTai"], pa.float64()).to_numpy(zero_copy_only=False)
    mjd = np.where(np.isfinite(mjd), mjd, np.nan)
    timed = mjd[np.isfinite(mjd)]
    first, last = (float(timed.min()), float(timed.max())) if timed.size else (np.nan, np.nan)
    hpx = alerts[paths.HPX29].to_numpy(zero_copy_only=False).astype(np.int64)
    object_ids = pc.cast(alerts["diaObjectId"], pa.int64())
    source_ids = pc.cast(alerts["diaSourceId"], pa.int64())
    distances: np.ndarray | None = None
    tables = []
    for spec in skymaps:
        if not (last >= spec.event_mjd and first <= spec.window_end_mjd):
            continue  # no alert of the batch falls in the map's window
        in_window = (mjd >= spec.event_mjd) & (mjd <= spec.window_end_mjd)
        rows = np.flatnonzero(in_window)
        index = cached_index(spec, cache_bytes)
        contour = index.contour(hpx[rows])
        rows, contour = rows[contour > 0], contour[contour > 0]
        if rows.size == 0:
            continue
        cells = index.cells(hpx[rows])
        if distances is None:
            distances = host_distances(object_ids, context)
        host = distances[rows]
        dens3 = index.density3d(cells, host)
        where = pa.array(rows)
        tables.append(
            pa.table(
                {
                    "skymapId": pa.array(np.full(rows.size, spec.id, np.int64)),
                    "eventId": pa.array(np.full(rows.size, spec.event_id, dtype=object), pa.string()),
                    "diaObjectId": object_ids.take(where),
                    "diaSourceId": source_ids.take(where),
                    "midpointMjdTai": pa.array(mjd[rows]),
                    "daysSinceEvent": pa.array(mjd[rows] - spec.event_mjd),
                    "contour": pa.array(contour.astype(np.int32)),
                    "probdens2": pa.array(np.where(cells >= 0, index.probdensity[np.maximum(cells, 0)], 0.0)),
                    "probdens3": pa.array(dens3, mask=~np.isfinite(dens3)),
                    "distanceMpc": pa.array(host, mask=~np.isfinite(host)),
                },
                schema=MMA_HITS_SCHEMA,
            )
        )
    if not tables:
        return MMA_HITS_SCHEMA.empty_table()
    return pa.concat_tables(tables).combine_chunks()
