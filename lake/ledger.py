"""The filter delivery ledger: one Delta table under the lake recording every delivery of every filter match.

A row says that a match (filter id and version, diaObjectId, diaSourceId) went to a channel (``kafka``,
``email``, ``webhook``) in a batch, with a status: ``pending`` before the attempt, then ``delivered`` or
``failed``. The latest status of a (match, channel) decides: delivered and failed matches are never sent again,
so a batch processed twice (after a crash before the Kafka offsets were committed) delivers nothing twice; a
pending one is looked for on its topic before it is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake

from nightjar import paths
from nightjar.lake.read import arrow_dataset

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SCHEMA = pa.schema(
    [
        pa.field("filterId", pa.int64()),
        pa.field("filterVersion", pa.int32()),
        pa.field("key", pa.string()),  # the delivery key: version:diaObjectId:diaSourceId, or new:diaObjectId
        pa.field("diaObjectId", pa.int64()),
        pa.field("diaSourceId", pa.int64()),
        pa.field("channel", pa.string()),
        pa.field("status", pa.string()),
        pa.field("batch", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("recordedAt", pa.timestamp("us", tz="UTC")),
    ]
)


def location(home: Path) -> Path:
    return paths.table_dir(home, paths.FILTER_LEDGER)


def append(home: Path, rows: pa.Table) -> None:
    """Record ``rows`` (in ``SCHEMA``); several writers may append at once."""
    if rows.num_rows == 0:
        return
    rows = rows.select(SCHEMA.names).cast(SCHEMA).sort_by([("filterId", "ascending"), ("diaObjectId", "ascending")])
    where = location(home)
    target: str | DeltaTable = DeltaTable(str(where)) if DeltaTable.is_deltatable(str(where)) else str(where)
    write_deltalake(target, rows, mode="append", commit_properties=CommitProperties(max_commit_retries=20))


def lookup(home: Path, filter_ids: Sequence[int], object_ids: pa.Array) -> pa.Table:
    """Every ledger row of these filters about these objects (in ``SCHEMA``)."""
    where = location(home)
    if not filter_ids or len(object_ids) == 0 or not DeltaTable.is_deltatable(str(where)):
        return SCHEMA.empty_table()
    dataset = arrow_dataset(DeltaTable(str(where)))
    objects = pc.unique(pc.cast(object_ids, pa.int64()))
    wanted = ds.field("filterId").isin(pa.array(sorted(set(filter_ids)), pa.int64())) & ds.field("diaObjectId").isin(
        objects
    )
    return dataset.to_table(filter=wanted).cast(SCHEMA)


def read(home: Path, filter_id: int | None = None) -> pa.Table:
    """The ledger (of one filter), for reports and tests."""
    where = location(home)
    if not DeltaTable.is_deltatable(str(where)):
        return SCHEMA.empty_table()
    dataset = arrow_dataset(DeltaTable(str(where)))
    return dataset.to_table(filter=None if filter_id is None else ds.field("filterId") == filter_id).cast(SCHEMA)


def compact(home: Path) -> None:
    """Merge the ledger's many small files (one per batch and channel) into few."""
    where = location(home)
    if DeltaTable.is_deltatable(str(where)):
        metrics = DeltaTable(str(where)).optimize.compact()
        log.info("ledger compacted: %s", metrics)
