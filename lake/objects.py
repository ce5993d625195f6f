"""What the lake knows about objects: an object's row, its light curve, its context and its annotations.

Every function takes the lake's tables as pyarrow datasets from one snapshot (``read.datasets``); a table the
lake does not have yet reads as empty. Object rows are found by ``diaObjectId``; detections and forced photometry
by ``diaObjectId`` within a few arcseconds of the object's position, so the reads prune on the ``hpx29``-sorted
files' statistics instead of scanning every night.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake.lookup import KeyIndex, cone_ranges
from nightjar.lake.region import ranges_filter
from nightjar.paths import OBJECT_KEY

Tables = Mapping[str, ds.Dataset]
# Detections within this distance of the object's position belong to it (LSST associates within ~1 arcsec).
REACH_ARCSEC = 10.0
DETECTION_COLUMNS = [
    OBJECT_KEY,
    "diaSourceId",
    "midpointMjdTai",
    "band",
    "psfFlux",
    "psfFluxErr",
    "scienceFlux",
    "scienceFluxErr",
    "reliability",
    "ra",
    "dec",
    paths.FROM_HISTORY,
]
FORCED_COLUMNS = [
    OBJECT_KEY,
    "diaForcedSourceId",
    "midpointMjdTai",
    "band",
    "psfFlux",
    "psfFluxErr",
    "scienceFlux",
    "scienceFluxErr",
]
CUTOUT_KINDS = {"science": "cutoutScience", "template": "cutoutTemplate", "difference": "cutoutDifference"}


def _ids(object_ids: list[int] | np.ndarray) -> pa.Array:
    return pa.array(np.unique(np.asarray(object_ids, dtype=np.int64)), pa.int64())


def _present(dataset: ds.Dataset, columns: list[str]) -> list[str]:
    names = set(dataset.schema.names)
    return [c for c in columns if c in names]


def objects_rows(
    tables: Tables,
    object_ids: list[int] | np.ndarray,
    columns: list[str] | None = None,
    index: KeyIndex | None = None,
) -> pa.Table:
    """The ``objects`` rows of these objects (one each; unknown ids are absent), in id order.

    With ``index`` (the objects table's :class:`KeyIndex`, same version), only the row groups holding them are
    read; otherwise the ids are looked for in every row group (the files are sorted by position, not id).
    """
    objects = tables.get(paths.OBJECTS)
    if objects is None or len(object_ids) == 0:
        return pa.table({OBJECT_KEY: pa.array([], pa.int64())})
    wanted = None if columns is None else _present(objects, list(dict.fromkeys([OBJECT_KEY, *columns])))
    if index is not None:
        rows = index.read(_ids(object_ids).to_numpy(), wanted)
        # Files of older versions may lack columns added since: the dataset's schema is the table's.
        fields = [objects.schema.field(n) for n in (wanted or objects.schema.names)]
        columns_out = [
            rows[f.name].cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in fields
        ]
        return pa.table(columns_out, schema=pa.schema(fields)).sort_by(OBJECT_KEY)
    rows = objects.to_table(columns=wanted, filter=ds.field(OBJECT_KEY).isin(_ids(object_ids)))
    return rows.sort_by(OBJECT_KEY)


def object_row(tables: Tables, object_id: int, index: KeyIndex | None = None) -> pa.Table | None:
    """The object's ``objects`` row (a one-row table), or None when the lake has no such object."""
    rows = objects_rows(tables, [object_id], index=index)
    return rows.slice(0, 1) if rows.num_rows else None


def _near(objects: pa.Table) -> ds.Expression | None:
    """An ``hpx29`` filter covering a few arcseconds around each object's position."""
    if objects.num_rows == 0:
        return None
    ra = objects["ra"].to_numpy(zero_copy_only=False)
    dec = objects["dec"].to_numpy(zero_copy_only=False)
    ranges = np.concatenate([cone_ranges(r, d, REACH_ARCSEC) for r, d in zip(ra, dec, strict=True)])
    ranges = ranges[np.argsort(ranges[:, 0])]
    # Merge overlapping ranges so that nearby objects share their terms.
    merged: list[list[int]] = []
    for lo, hi in ranges.tolist():
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return ranges_filter(np.asarray(merged, dtype=np.int64))


def _rows_of(tables: Tables, table: str, objects: pa.Table, columns: list[str] | None, order: list[str]) -> pa.Table:
    dataset = tables.get(table)
    if dataset is None or objects.num_rows == 0:
        return pa.table({OBJECT_KEY: pa.array([], pa.int64())})
    where = ds.field(OBJECT_KEY).isin(_ids(objects[OBJECT_KEY].to_numpy()))
    region = _near(objects) if paths.HPX29 in dataset.schema.names else None
    if region is not None:
        where = region & where
    rows = dataset.to_table(columns=None if columns is None else _present(dataset, columns), filter=where)
    keys = [(c, "ascending") for c in order if c in rows.column_names]
    return rows.sort_by(keys) if keys else rows


@dataclass(frozen=True)
class LightCurves:
    """Detections (``sources``) and forced photometry (``forced_sources``) of some objects, by object then time."""

    detections: pa.Table
    forced: pa.Table

    def of(self, object_id: int) -> LightCurves:
        """The light curve of one of the objects."""

        def pick(table: pa.Table) -> pa.Table:
            if table.num_rows == 0:
                return table
            return table.filter(pc.equal(table[OBJECT_KEY], pa.scalar(object_id, pa.int64())))

        return LightCurves(pick(self.detections), pick(self.forced))


def light_curves(tables: Tables, objects: pa.Table, forced: bool = True, full: bool = False) -> LightCurves:
    """The light curves of objects given by their ``objects`` rows (``diaObjectId``, ``ra``, ``dec``).

    ``full``: every column of the ``sources`` and ``forced_sources`` rows, not just the photometry.
    """
    order = [OBJECT_KEY, "midpointMjdTai"]
    detections = _rows_of(tables, paths.SOURCES, objects, None if full else DETECTION_COLUMNS, [*order, "diaSourceId"])
    photometry = (
        _rows_of(tables, paths.FORCED_SOURCES, objects, None if full else FORCED_COLUMNS, [*order, "diaForcedSourceId"])
        if forced
        else pa.table({OBJECT_KEY: pa.array([], pa.int64())})
    )
    return LightCurves(detections, photometry)


def latest_alert_source(object_rows: pa.Table, detections: pa.Table) -> int | None:
    """The diaSourceId of the object's latest alert (the one whose cutouts the lake holds), or None."""
    if "lastDiaSourceId" in object_rows.column_names:
        last = object_rows["lastDiaSourceId"][0].as_py()
        if last is not None:
            return int(last)
    if detections.num_rows == 0:
        return None
    alerts = detections
    if paths.FROM_HISTORY in detections.column_names:
        alerts = detections.filter(pc.invert(pc.fill_null(detections[paths.FROM_HISTORY], False)))
    if alerts.num_rows == 0:
        return None
    latest = pc.index(alerts["midpointMjdTai"], pc.max(alerts["midpointMjdTai"]))
    return int(alerts["diaSourceId"][latest.as_py()].as_py())


def _by_object(tables: Tables, table: str, object_id: int, order: list[str]) -> pa.Table | None:
    dataset = tables.get(table)
    if dataset is None:
        return None
    rows = dataset.to_table(filter=ds.field(OBJECT_KEY) == pa.scalar(object_id, pa.int64()))
    keys = [(c, "ascending") for c in order if c in rows.column_names]
    return rows.sort_by(keys) if keys else rows


@dataclass(frozen=True)
class Context:
    """An object's stored context: its ``context`` row (None: not classified yet) and its ranked matches."""

    row: pa.Table | None
    matches: pa.Table


def context_of(tables: Tables, object_id: int) -> Context:
    """The object's stored Sherlock-style context (class, best match) and every ranked catalogue match."""
    row = _by_object(tables, paths.CONTEXT, object_id, [])
    matches = _by_object(tables, paths.CONTEXT_MATCHES, object_id, ["rank"])
    if row is not None and row.num_rows and matches is not None and "catalogs_version" in matches.column_names:
        # Matches of an earlier catalogue set linger until `nightjar catalog refresh` drops them: not this row's.
        current = row["catalogs_version"][0]
        matches = matches.filter(pc.equal(matches["catalogs_version"], current))
    empty = pa.table({OBJECT_KEY: pa.array([], pa.int64())})
    return Context(
        row.slice(0, 1) if row is not None and row.num_rows else None, matches if matches is not None else empty
    )


def tns_of(tables: Tables, object_id: int) -> pa.Table | None:
    """The object's TNS match (``crossmatch_tns``): one row, or None when it has none."""
    rows = _by_object(tables, paths.CROSSMATCH_TNS, object_id, ["separationArcsec"])
    return rows.slice(0, 1) if rows is not None and rows.num_rows else None


def skymap_hits_of(tables: Tables, object_id: int) -> pa.Table:
    """The object's skymap hits (``mma_area_hits``), in time order."""
    rows = _by_object(tables, paths.MMA_AREA_HITS, object_id, ["midpointMjdTai", "skymapId"])
    return rows if rows is not None else pa.table({OBJECT_KEY: pa.array([], pa.int64())})


def annotations_of(tables: Tables, object_id: int) -> pa.Table:
    """The object's annotations, oldest first."""
    rows = _by_object(tables, paths.ANNOTATIONS, object_id, ["created", "annotationId"])
    return rows if rows is not None else pa.table({OBJECT_KEY: pa.array([], pa.int64())})


def watch_hits_of(
    tables: Tables, object_id: int, hidden_lists: list[int], hidden_maps: list[int]
) -> dict[str, pa.Table]:
    """The object's watchlist and watchmap hits (``watchlist_hits``, ``area_hits``), newest first, without those
    of the lists and maps given as hidden (other users' private ones)."""
    out = {}
    for table, column, hidden in (
        (paths.WATCHLIST_HITS, "watchlistId", hidden_lists),
        (paths.AREA_HITS, "watchmapId", hidden_maps),
    ):
        rows = _by_object(tables, table, object_id, [])
        if rows is None:
            rows = pa.table({OBJECT_KEY: pa.array([], pa.int64())})
        elif hidden and rows.num_rows:
            rows = rows.filter(pc.invert(pc.is_in(rows[column], value_set=pa.array(hidden, pa.int64()))))
        if rows.num_rows and "midpointMjdTai" in rows.column_names:
            rows = rows.sort_by([("midpointMjdTai", "descending")])
        out[table] = rows
    return out
