"""Commit a micro-batch to the lake's Delta tables, idempotently.

Every commit carries Delta application transactions ``(app_id, version)``: one per Kafka (topic, partition),
with the batch's last offset as the version. A batch whose offsets a table has already recorded is not written
again, so re-processing after a crash between the lake commit and the Kafka offset commit adds nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from nightjar import paths

log = logging.getLogger(__name__)

COMMIT_RETRIES = 10


def app_id(topic: str, partition: int) -> str:
    """The Delta application-transaction id of a Kafka partition."""
    return f"nightjar:{topic}:{partition}"


def _open(home: Path, table: str) -> DeltaTable | None:
    location = paths.table_dir(home, table)
    return DeltaTable(str(location)) if DeltaTable.is_deltatable(str(location)) else None


def already_committed(dt: DeltaTable | None, txns: dict[str, int]) -> bool:
    """True when the table recorded every transaction at or beyond the given versions."""
    if dt is None or not txns:
        return False
    for app, version in txns.items():
        recorded = dt.transaction_version(app)
        if recorded is None or recorded < version:
            return False
    return True


def _properties(txns: dict[str, int]) -> CommitProperties:
    return CommitProperties(
        app_transactions=[Transaction(app, version) for app, version in txns.items()],
        max_commit_retries=COMMIT_RETRIES,
    )


def append(home: Path, table: str, data: pa.Table, txns: dict[str, int]) -> bool:
    """Append rows sorted by the order-29 HEALPix index; False if these offsets were already committed."""
    dt = _open(home, table)
    if already_committed(dt, txns):
        log.info("%s: batch %s already committed, skipped", table, txns)
        return False
    data = drop_committed(dt, data)
    if data.num_rows == 0:
        return False
    if paths.HPX29 in data.column_names:
        data = data.sort_by(paths.HPX29)
    write_deltalake(
        str(paths.table_dir(home, table)) if dt is None else dt,
        data,
        mode="append",
        partition_by=paths.PARTITION_COLUMNS[table] or None,
        schema_mode="merge",
        commit_properties=_properties(txns),
    )
    return True


def drop_committed(dt: DeltaTable | None, data: pa.Table) -> pa.Table:
    """``data`` without the rows whose Kafka offset the table already recorded as committed.

    A batch read again after a crash can straddle what was committed: the consumer cuts the same messages into
    batches differently, so some rows of the new batch were written by the lost one and some were not.
    """
    columns = (paths.KAFKA_TOPIC, paths.KAFKA_PARTITION, paths.KAFKA_OFFSET)
    if dt is None or data.num_rows == 0 or not set(columns) <= set(data.column_names):
        return data
    topics, parts, offsets = (data[c].to_numpy(zero_copy_only=False) for c in columns)
    keep = np.ones(data.num_rows, dtype=bool)
    for topic, part in set(zip(topics.tolist(), parts.tolist(), strict=True)):
        recorded = dt.transaction_version(app_id(topic, part))
        if recorded is not None:
            keep &= ~((topics == topic) & (parts == part) & (offsets <= recorded))
    if not keep.all():
        log.info("dropped %d rows committed by an earlier batch", int((~keep).sum()))
    return data if keep.all() else data.filter(pa.array(keep))


def latest_per_key(data: pa.Table, key: str, order: str) -> pa.Table:
    """One row per ``key``: the one with the largest ``order``."""
    if data.num_rows == 0:
        return data
    ranked = data.append_column("_pos", pa.array(range(data.num_rows), pa.int64()))
    ranked = ranked.sort_by([(key, "ascending"), (order, "descending")])
    first = ranked.group_by(key, use_threads=False).aggregate([("_pos", "first")])
    return data.take(np.sort(first["_pos_first"].to_numpy()))


def upsert(home: Path, table: str, data: pa.Table, txns: dict[str, int], order: str) -> bool:
    """Insert new keys, update existing ones when ``order`` is not older; False if already committed."""
    key = paths.KEY_COLUMNS[table]
    data = latest_per_key(data, key, order)
    for attempt in range(COMMIT_RETRIES):
        dt = _open(home, table)
        if already_committed(dt, txns):
            return False
        if dt is None:
            try:
                write_deltalake(
                    str(paths.table_dir(home, table)), data, mode="error", commit_properties=_properties(txns)
                )
                return True
            except Exception:  # another writer created the table first: merge into it
                if attempt == COMMIT_RETRIES - 1:
                    raise
                continue
        try:
            (
                dt.merge(
                    data,
                    predicate=f"t.{key} = s.{key}",
                    source_alias="s",
                    target_alias="t",
                    merge_schema=True,
                    commit_properties=_properties(txns),
                )
                .when_matched_update_all(predicate=f"s.{order} >= t.{order}")
                .when_not_matched_insert_all()
                .execute()
            )
            return True
        except CommitFailedError:
            log.warning("%s: merge conflict, retrying (%d)", table, attempt + 1)
    raise RuntimeError(f"{table}: merge still conflicting after {COMMIT_RETRIES} attempts")
