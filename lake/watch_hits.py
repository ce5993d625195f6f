"""The ``watchlist_hits`` and ``area_hits`` lake tables: alerts that fell in a watchlist's cone or a watchmap's area.

Live matching appends a batch's hits with the batch's commit (its Kafka offsets as Delta application transactions,
exactly once like every table). Matching a list over the history replaces that list's rows in one commit
(``replace_list``), keeping the live hits that batches committed while the history was being matched.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import commit, tables
from nightjar.lake.read import arrow_dataset
from nightjar.lake.schemas import AREA_HITS_SCHEMA, MMA_HITS_SCHEMA, WATCHLIST_HITS_SCHEMA
from nightjar.storage import Home

SCHEMAS = {
    paths.WATCHLIST_HITS: WATCHLIST_HITS_SCHEMA,
    paths.AREA_HITS: AREA_HITS_SCHEMA,
    paths.MMA_AREA_HITS: MMA_HITS_SCHEMA,
}
LIST_COLUMN = {paths.WATCHLIST_HITS: "watchlistId", paths.AREA_HITS: "watchmapId", paths.MMA_AREA_HITS: "skymapId"}
# What makes a hit one hit: the list, the cone (watchlists) and the alert.
HIT_KEYS = {
    paths.WATCHLIST_HITS: ("watchlistId", "coneId", "diaSourceId"),
    paths.AREA_HITS: ("watchmapId", "diaSourceId"),
    paths.MMA_AREA_HITS: ("skymapId", "diaSourceId"),
}


def keep_alerts(hits: pa.Table, alerts: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The hits of the given alerts (``diaSourceId``) only: a batch commits the hits of the alerts it stores,
    not of those it set aside as re-sent (their hits were committed with them)."""
    if hits.num_rows == 0:
        return hits
    stored = pa.chunked_array([alerts]).combine_chunks() if isinstance(alerts, pa.Array) else alerts.combine_chunks()
    return hits.filter(pc.fill_null(pc.is_in(hits["diaSourceId"], value_set=stored), False))


def append_batch(home: Home, table: str, hits: pa.Table, txns: dict[str, int]) -> bool:
    """A batch's hits, appended with its transactions (call under the lake lock, before ``log_batch``): a batch
    committed again writes them once. A batch without hits writes nothing (a replay of it has nothing to repeat),
    sparing the table a commit per batch."""
    if hits.num_rows == 0:
        return False
    return commit.append(home, table, hits.cast(SCHEMAS[table]), txns)


def _key_strings(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    parts = [pc.cast(table[c], pa.string()) for c in columns]
    return pc.binary_join_element_wise(*parts, ":")


def rows_of_list(home: Home, table: str, list_id: int, version: int | None = None) -> pa.Table:
    """Every stored hit of one watchlist or watchmap (at a table version, or the latest)."""
    if not tables.exists(home, table):
        return SCHEMAS[table].empty_table()
    dt = tables.load(home, table, version)
    found = arrow_dataset(dt).to_table(filter=ds.field(LIST_COLUMN[table]) == list_id)
    return found.select(SCHEMAS[table].names).cast(SCHEMAS[table])


def table_version(home: Home, table: str) -> int | None:
    """The current version of a table; None when it does not exist."""
    dt = tables.open_table(home, table)
    return dt.version() if dt is not None else None


def replace_list(home: Home, table: str, list_id: int, hits: pa.Table, since_version: int | None) -> int:
    """Replace every stored hit of one list by ``hits`` (matched over the lake as of ``since_version`` of the
    table), in one commit, keeping the hits batches committed after that version. Returns the rows stored."""
    hits = hits.cast(SCHEMAS[table])
    keys = HIT_KEYS[table]
    if hits.num_rows == 0 and not tables.is_lake(home):
        return 0  # no lake yet: nothing to store or replace
    with commit.lake_lock(home):
        current = rows_of_list(home, table, list_id)
        before = rows_of_list(home, table, list_id, since_version) if since_version is not None else None
        # The table did not exist when the history was read: every stored hit came from a batch since then.
        newer = current
        if before is not None and current.num_rows and before.num_rows:
            seen = _key_strings(before, keys)
            newer = current.filter(pc.invert(pc.is_in(_key_strings(current, keys), value_set=seen)))
        rows = pa.concat_tables([hits, newer])
        if rows.num_rows:
            strings = _key_strings(rows, keys).to_numpy(zero_copy_only=False)
            _, first = np.unique(strings, return_index=True)
            rows = rows.take(pa.array(np.sort(first)))
        if table_version(home, table) is None:
            if rows.num_rows == 0:
                return 0  # nothing to store, and no table to empty: a home without alerts gets no lake
            commit.append(home, table, rows, {})
        else:
            commit.replace_rows(home, table, rows, f"{LIST_COLUMN[table]} = {int(list_id)}")
        commit.log_batch(home, {})
    return rows.num_rows


def forget_list(home: Home, table: str, list_id: int) -> None:
    """Remove every hit of a deleted watchlist or watchmap."""
    if table_version(home, table) is None:
        return
    with commit.lake_lock(home):
        commit.replace_rows(home, table, SCHEMAS[table].empty_table(), f"{LIST_COLUMN[table]} = {int(list_id)}")
        commit.log_batch(home, {})


def hits_of_list(tables: Mapping[str, ds.Dataset], table: str, list_id: int, limit: int = 500) -> pa.Table:
    """The newest ``limit`` hits of one watchlist (``table`` = ``watchlist_hits``) or watchmap (``area_hits``)."""
    dataset = tables.get(table)
    if dataset is None:
        return SCHEMAS[table].empty_table()
    rows = dataset.to_table(filter=ds.field(LIST_COLUMN[table]) == pa.scalar(list_id, pa.int64()))
    return rows.sort_by([("midpointMjdTai", "descending")]).slice(0, limit)
