"""The object history index: every detection and forced measurement the lake holds, by object.

One slim row per stored ``sources`` or ``forced_sources`` row that belongs to an object (its key, the time, band,
flux, error and reliability), appended in the same lake commit as the rows themselves and sorted by
``diaObjectId`` within each file. A batch reads the rows of its own objects here to

- keep only the packet history the lake does not hold yet (without looking keys up in ``sources``), and
- compute each object's features over its whole stored light curve (without re-reading ``sources``),

so a batch's work depends on its objects, not on how many nights the lake holds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit, read, tables
from nightjar.lake.schemas import HISTORY_FORCED, HISTORY_KEY, OBJECT_HISTORY_SCHEMA
from nightjar.storage import Home

KEY = HISTORY_KEY  # the table's columns, as the pipeline names them (``history.KEY``, ``history.FORCED``)
FORCED = HISTORY_FORCED

DETECTION_COLUMNS = ["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "reliability"]


def rows_for(table: pa.Table, key: str, forced: bool) -> pa.Table:
    """The index rows of lake rows (``sources`` with ``diaSourceId`` or ``forced_sources`` with ``forcedKey``)
    that belong to an object."""
    table = table.filter(pc.is_valid(table["diaObjectId"]))
    n = table.num_rows
    columns = {}
    for f in OBJECT_HISTORY_SCHEMA:
        if f.name == KEY:
            columns[f.name] = table[key].cast(pa.int64())
        elif f.name == FORCED:
            columns[f.name] = pa.array(np.full(n, forced), pa.bool_())
        elif f.name in table.column_names:
            columns[f.name] = table[f.name].cast(f.type)
        else:
            columns[f.name] = pa.nulls(n, f.type)
    return pa.table(columns, schema=OBJECT_HISTORY_SCHEMA)


def stored(home: Home, object_ids: np.ndarray) -> pa.Table:
    """The index rows of the given objects (every detection and forced measurement the lake holds of them)."""
    ids = np.unique(np.asarray(object_ids, np.int64))
    dt = tables.open_table(home, paths.OBJECT_HISTORY) if len(ids) else None
    if dt is None:
        return OBJECT_HISTORY_SCHEMA.empty_table()
    # Files are sorted by diaObjectId in small row groups: the min/max bounds skip the groups that hold none of
    # the ids before the exact membership test reads any values.
    low, high = int(ids[0]), int(ids[-1])
    where = (ds.field("diaObjectId") >= low) & (ds.field("diaObjectId") <= high)
    where &= ds.field("diaObjectId").isin(pa.array(ids, pa.int64()))
    table = read.arrow_dataset(dt).to_table(filter=where)
    return table.select(OBJECT_HISTORY_SCHEMA.names).cast(OBJECT_HISTORY_SCHEMA)


def unindexed(home: Home, txns: dict[str, int]) -> tuple[pa.Table, dict[str, int]]:
    """Index rows for what ``sources`` and ``forced_sources`` hold beyond the index, for the Kafka partitions of
    ``txns``.

    A batch appends its new detections and forced measurements, then their index rows; a crash in between
    leaves rows the index does not know, and a batch read again after the crash would write them twice. The
    tables' application transactions say how far each got, so the rows of the gap (by their Kafka offsets) are
    read back and indexed. Nothing is read unless a table is ahead of the index (and a lake written before the
    index existed is indexed once, the first time a batch of the same partitions commits). Returns the rows and,
    per application id, the offset up to which they cover the tables: the index's commit records at least that.
    """
    index = _open(home, paths.OBJECT_HISTORY)
    found = []
    covered: dict[str, int] = {}
    for table, key, forced in ((paths.SOURCES, "diaSourceId", False), (paths.FORCED_SOURCES, paths.FORCED_KEY, True)):
        dt = _open(home, table)
        if dt is None:
            continue
        where = None
        for app in txns:
            done = dt.transaction_version(app)
            indexed = index.transaction_version(app) if index is not None else None
            place = commit.parse_app_id(app)
            if done is None or place is None or (indexed is not None and indexed >= done):
                continue
            gap = (ds.field(paths.KAFKA_TOPIC) == place[0]) & (ds.field(paths.KAFKA_PARTITION) == place[1])
            gap &= ds.field(paths.KAFKA_OFFSET) <= done
            if indexed is not None:
                gap &= ds.field(paths.KAFKA_OFFSET) > indexed
            where = gap if where is None else where | gap
            covered[app] = max(done, covered.get(app, done))
        if where is not None:
            dataset = read.arrow_dataset(dt)
            # Forced photometry has no reliability: read the columns the table has (``rows_for`` fills the rest).
            columns = [c for c in dict.fromkeys((*DETECTION_COLUMNS, key)) if c in dataset.schema.names]
            rows = dataset.to_table(columns=columns, filter=where)
            found.append(rows_for(rows, key, forced))
    return (pa.concat_tables(found) if found else OBJECT_HISTORY_SCHEMA.empty_table()), covered


def _open(home: Home, table: str) -> DeltaTable | None:
    return tables.open_table(home, table)


def unseen(rows: pa.Table, key: str, known: pa.Table, forced: bool) -> pa.Table:
    """The rows of ``rows`` whose ``key`` the index does not hold yet (``known``: the index rows of their objects).

    Rows without an object (solar-system sources) cannot be in the index and are all kept.
    """
    if rows.num_rows == 0 or known.num_rows == 0:
        return rows
    held = known.filter(pc.equal(known[FORCED], forced))[KEY]
    return rows.filter(pc.invert(pc.fill_null(pc.is_in(rows[key], value_set=held), False)))
