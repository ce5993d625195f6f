"""The filter delivery ledger: one Delta table under the lake recording every delivery of every filter match.

A row says that a match (filter id and version, diaObjectId, diaSourceId) went to a channel (``kafka``,
``email``, ``webhook``) in a batch, with a status: ``pending`` before the attempt, then ``delivered`` or
``failed``. The latest status of a (match, channel) decides: delivered and failed matches are never sent again,
so a batch processed twice (after a crash before the Kafka offsets were committed) delivers nothing twice; a
pending one is looked for on its topic before it is sent again.

This table is the journal, for reports; delivery decides from its keyed copy in the metadata database
(``nightjar.sql.delivery_state``), written after it.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake

from nightjar import paths
from nightjar.lake import tables
from nightjar.lake.read import arrow_dataset
from nightjar.lake.schemas import FILTER_LEDGER_SCHEMA
from nightjar.storage import Home

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _open(home: Home) -> DeltaTable | None:
    return tables.open_table(home, paths.FILTER_LEDGER)


def append(home: Home, rows: pa.Table) -> None:
    """Record ``rows`` (in ``FILTER_LEDGER_SCHEMA``); several writers may append at once."""
    if rows.num_rows == 0:
        return
    rows = (
        rows.select(FILTER_LEDGER_SCHEMA.names)
        .cast(FILTER_LEDGER_SCHEMA)
        .sort_by([("filterId", "ascending"), ("diaObjectId", "ascending")])
    )
    target, options = tables.target(home, paths.FILTER_LEDGER)
    write_deltalake(
        target,
        rows,
        mode="append",
        storage_options=options,
        commit_properties=CommitProperties(max_commit_retries=20),
    )


def read(home: Home, filter_id: int | None = None) -> pa.Table:
    """The ledger (of one filter), for reports and tests."""
    dt = _open(home)
    if dt is None:
        return FILTER_LEDGER_SCHEMA.empty_table()
    dataset = arrow_dataset(dt)
    return dataset.to_table(filter=None if filter_id is None else ds.field("filterId") == filter_id).cast(
        FILTER_LEDGER_SCHEMA
    )


def compact(home: Home) -> None:
    """Merge the ledger's many small files (one per batch and channel) into few."""
    dt = _open(home)
    if dt is not None:
        metrics = dt.optimize.compact()
        log.info("ledger compacted: %s", metrics)
