"""Commit a micro-batch to the lake's Delta tables, idempotently.

Every commit carries Delta application transactions ``(app_id, version)``: one per Kafka (topic, partition),
with the batch's last offset as the version. A batch whose offsets a table has already recorded is not written
again, so re-processing after a crash between the lake commit and the Kafka offset commit adds nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError

from nightjar import paths
from nightjar.lake import staged as staged_files
from nightjar.lake import tables
from nightjar.lake.keys import first_per_key, latest_per_key
from nightjar.lake.partitions import with_partition_columns
from nightjar.lake.read import arrow_dataset
from nightjar.storage import Home, lake_root

log = logging.getLogger(__name__)

COMMIT_RETRIES = 10


@contextmanager
def lake_lock(home: Home) -> Iterator[None]:
    """One batch commit at a time per lake on a file system (an advisory file lock, across processes on shared
    storage); nothing on object storage, which has no locks.

    Delta's optimistic concurrency keeps each table's log consistent, but a batch spans several tables and its
    key lookups read what other batches commit; serialising batch commits keeps those reads exact. On object
    storage, delta-rs makes each commit file with a conditional put (S3 ``If-None-Match``), so concurrent
    writers never overwrite each other's commit: the loser re-reads the log and retries, and the batch's
    application transactions (one per Kafka partition) keep every retried or re-run commit exactly once.
    Drivers of one consumer group own disjoint partitions, so their batches write disjoint rows.
    """
    root = lake_root(home)
    if not root.is_local:
        yield
        return
    folder = root.path
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".commit.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


APP_PREFIX = "nightjar:"


def app_id(topic: str, partition: int) -> str:
    """The Delta application-transaction id of a Kafka partition."""
    return f"{APP_PREFIX}{topic}:{partition}"


def parse_app_id(app: str) -> tuple[str, int] | None:
    """The (topic, partition) of an application-transaction id made by ``app_id``, else None.

    >>> parse_app_id("nightjar:alerts:3")
    ('alerts', 3)
    """
    if not app.startswith(APP_PREFIX):
        return None
    topic, _, part = app.removeprefix(APP_PREFIX).rpartition(":")
    return (topic, int(part)) if topic and part.isdigit() else None


def _open(home: Home, table: str) -> DeltaTable | None:
    return tables.open_table(home, table)


def already_committed(dt: DeltaTable | None, txns: dict[str, int]) -> bool:
    """True when the table recorded every transaction at or beyond the given versions."""
    if dt is None or not txns:
        return False
    for app, version in txns.items():
        recorded = dt.transaction_version(app)
        if recorded is None or recorded < version:
            return False
    return True


def _properties(txns: dict[str, int], dt: DeltaTable | None = None, retries: int = COMMIT_RETRIES) -> CommitProperties:
    """The batch's application transactions, never below what ``dt`` recorded: a batch read again after a
    consumer rebalance can hold one partition's older offsets beside another's newer ones, and recording the
    older offset would let the next batch write those rows a second time."""
    recorded = {app: dt.transaction_version(app) for app in txns} if dt is not None else {}
    return CommitProperties(
        app_transactions=[Transaction(app, max(v, recorded.get(app) or v)) for app, v in txns.items()],
        max_commit_retries=retries,
    )


def writer_properties(table: str, schema: pa.Schema) -> WriterProperties:
    """The Parquet writer properties of a table: its row-group size, and binary columns written plain, without
    dictionary or statistics."""
    # Row groups small enough that their statistics prune: a cutout lookup reads one group of a few dozen
    # alerts; a cone search reads the few groups of hpx29-sorted rows whose index range meets the cone.
    # Binary columns (cutouts: ~25 KB images) are written plain: no dictionary of distinct images to build and
    # throw away, no min/max statistics of image bytes (a quarter of the cutouts' write time).
    plain = ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")
    kinds = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    binary = {f.name: plain for f in schema if any(kind(f.type) for kind in kinds)}
    return WriterProperties(max_row_group_size=paths.ROW_GROUP_ROWS.get(table, 8192), column_properties=binary or None)


def _configuration(data: pa.Table) -> dict[str, str | None]:
    """Table properties set at creation: the Delta log keeps statistics for the first 32 columns only, so name
    the ones readers prune on (keys, time, the HEALPix index) explicitly."""
    wanted = [
        "diaSourceId",
        "diaObjectId",
        paths.FORCED_KEY,
        "midpointMjdTai",
        paths.NIGHT,
        paths.HPX29,
        paths.HPX_PART,
        paths.STATE_SEQ,
    ]
    return {"delta.dataSkippingStatsColumns": ",".join(c for c in wanted if c in data.column_names)}


def laid_out(table: str, data: pa.Table) -> pa.Table:
    """Rows as the table stores them: with its partition columns, grouped by partition (each partition's rows
    contiguous, so they are written as slices, not copies) and in the table's sort order within each. Rows
    already in that order are not copied (a batch's cutouts are ~150 MB)."""
    data = with_partition_columns(table, data)
    keys = [c for c in (*paths.PARTITION_COLUMNS.get(table, []), paths.SORT_COLUMNS[table]) if c in data.column_names]
    if not keys or data.num_rows < 2:
        return data
    order = pc.sort_indices(data.select(keys), [(c, "ascending") for c in keys])
    if np.array_equal(order.to_numpy(), np.arange(data.num_rows)):
        return data
    return data.take(order)


def _write(
    home: Home, table: str, dt: DeltaTable | None, data: pa.Table, txns: dict[str, int], states: bool = False
) -> int | None:
    """Append, retrying commit conflicts: blind appends rarely conflict, but a concurrent metadata change or
    optimize can make delta-rs give up; the batch's transaction ids make a retry safe.

    ``states``: stamp the rows with ``stateSeq``, the version this commit makes, and return it. delta-rs may not
    retry such a commit at a later version itself: each try is stamped anew, so the sequence is always the
    commit's own version, whatever other writers (folds, other drivers on object storage) commit meanwhile."""
    data = laid_out(table, data)
    for attempt in range(COMMIT_RETRIES):
        seq = (dt.version() if dt is not None else -1) + 1
        rows = _stamped(data, seq) if states else data
        try:
            write_deltalake(
                tables.uri(home, table) if dt is None else dt,
                rows,
                storage_options=tables.options(home) if dt is None else None,
                mode="append",
                partition_by=paths.PARTITION_COLUMNS[table] or None,
                schema_mode="merge",
                configuration=_configuration(rows) if dt is None else None,
                writer_properties=writer_properties(table, rows.schema),
                commit_properties=_properties(txns, dt, retries=0 if states else COMMIT_RETRIES),
            )
            return seq if states else None
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                raise
            log.warning("%s: append conflict, retrying (%d)", table, attempt + 1)
            dt = _open(home, table)
            if already_committed(dt, txns):
                return None
    raise AssertionError("unreachable")


def _stamped(data: pa.Table, seq: int) -> pa.Table:
    column = pa.array(np.full(data.num_rows, seq, np.int64))
    if paths.STATE_SEQ in data.column_names:
        return data.set_column(data.column_names.index(paths.STATE_SEQ), paths.STATE_SEQ, column)
    return data.append_column(paths.STATE_SEQ, column)


def append(
    home: Home, table: str, data: pa.Table, txns: dict[str, int], staged: staged_files.StagedFiles | None = None
) -> bool:
    """Append rows in the table's sort order; False if these offsets were already committed.

    ``staged``: the files ``lake.staged.stage`` wrote for ``data`` before the lake lock was taken. They are
    committed as they are when they hold exactly the rows to append (``data`` is a subset of what was staged:
    re-sent alerts set aside, rows of offsets already committed dropped), else discarded and the rows written.
    """
    dt = _open(home, table)
    if already_committed(dt, txns):
        log.info("%s: batch %s already committed, skipped", table, txns)
        if staged is not None:
            staged.discard()
        return False
    data = drop_committed(dt, data)
    if staged is not None and dt is not None and staged.rows == data.num_rows:
        _commit_staged(home, dt, staged, txns)
        return True
    if staged is not None:
        staged.discard()
    _write(home, table, dt, data, txns)
    return True


def _commit_staged(home: Home, dt: DeltaTable, staged: staged_files.StagedFiles, txns: dict[str, int]) -> None:
    """Add staged files to the table's log with the batch's transactions, retrying commit conflicts."""
    for attempt in range(COMMIT_RETRIES):
        try:
            dt.create_write_transaction(
                staged.actions,
                mode="append",
                schema=dt.schema(),
                partition_by=list(dt.metadata().partition_columns) or None,
                commit_properties=_properties(txns, dt),
            )
            return
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                staged.discard()
                raise
            log.warning("%s: append conflict, retrying (%d)", staged.table, attempt + 1)
            dt = _open(home, staged.table) or dt
            if already_committed(dt, txns):
                staged.discard()
                return


def replace_rows(home: Home, table: str, data: pa.Table, predicate: str) -> None:
    """Replace the table's rows that match ``predicate`` (SQL over its columns) by ``data``, in one commit
    (Delta's replaceWhere; every row of ``data`` must match). No application transaction is recorded: the
    batch's own commits do that, and replacing the same rows again leaves the same table."""
    data = laid_out(table, data)
    for attempt in range(COMMIT_RETRIES):
        dt = _open(home, table)
        if dt is None:
            raise LookupError(f"{table}: no table to replace rows in")
        try:
            write_deltalake(
                dt,
                data,
                mode="overwrite",
                predicate=predicate,
                partition_by=paths.PARTITION_COLUMNS[table] or None,
                schema_mode="merge",
                writer_properties=writer_properties(table, data.schema),
                commit_properties=CommitProperties(max_commit_retries=COMMIT_RETRIES),
            )
            return
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                raise
            log.warning("%s: replace conflict, retrying (%d)", table, attempt + 1)


def log_batch(home: Home, txns: dict[str, int]) -> bool:
    """Record, after a batch reached every table, the version of each table: one lake snapshot.

    The lake's version is this log's version; reading a past lake reads each table at the versions logged.
    """
    dt = _open(home, paths.LAKE_LOG)
    if already_committed(dt, txns):
        return False
    versions = {t: opened.version() for t in paths.TABLES if (opened := _open(home, t)) is not None}
    row = pa.table(
        {
            "committedAt": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            "versions": pa.array([json.dumps(versions)], pa.string()),
            "offsets": pa.array([json.dumps(txns)], pa.string()),
        }
    )
    write_deltalake(
        tables.uri(home, paths.LAKE_LOG) if dt is None else dt,
        row,
        storage_options=tables.options(home) if dt is None else None,
        mode="append",
        commit_properties=_properties(txns, dt),
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


def append_states(home: Home, table: str, data: pa.Table, txns: dict[str, int]) -> int | None:
    """Append each key's new state (``data``: one complete state per key; the first is kept) with a ``stateSeq``
    larger than any stored; the sequence number, or None if these offsets were already committed.

    Merge-on-read (``lake.object_states``): nothing stored is rewritten, so the cost is the batch's, whatever the
    table's size; readers keep each key's newest state and ``lake.fold`` removes the others in the background.
    The sequence is the version the append makes (0 for the first): sequences grow with the commits, whoever
    writes them (``_write``).
    """
    dt = _open(home, table)
    if already_committed(dt, txns):
        log.info("%s: batch %s already committed, skipped", table, txns)
        return None
    return _write(home, table, dt, first_per_key(data, paths.KEY_COLUMNS[table]), txns, states=True)


def upsert(home: Home, table: str, data: pa.Table, txns: dict[str, int], order: str | None) -> bool:
    """Insert new keys, replace existing ones when ``order`` is not older; False if already committed.

    With ``order`` None, every given row replaces the stored one (the caller merged them already).
    Rows whose stored version is newer are left out; rows of keys the table lacks are appended, then the stored rows
    of the remaining keys are replaced (Delta's replaceWhere), the batch's application transactions recorded by the
    last commit: until then the batch counts as not committed, and running it again writes the same rows. Not
    ``merge``: delta-rs merges write string columns as ``string_view``, which pyarrow cannot filter yet, so every
    filtered read of the table would fail afterwards (tests/lake/test_string_types.py).
    """
    key = paths.KEY_COLUMNS[table]
    data = latest_per_key(data, key, order) if order is not None else first_per_key(data, key)
    sort = paths.SORT_COLUMNS[table]
    if sort in data.column_names and data.num_rows:
        # Sorted rows in small row groups: a cone search over objects reads only the groups that meet it.
        data = data.sort_by(sort)
    for attempt in range(COMMIT_RETRIES):
        dt = _open(home, table)
        if already_committed(dt, txns):
            return False
        if dt is None:
            try:
                write_deltalake(
                    tables.uri(home, table),
                    data,
                    storage_options=tables.options(home),
                    mode="error",
                    configuration=_configuration(data),
                    writer_properties=writer_properties(table, data.schema),
                    commit_properties=_properties(txns),
                )
                return True
            except Exception:  # another writer created the table first: upsert into it
                if attempt == COMMIT_RETRIES - 1:
                    raise
                continue
        if order is None:
            replacing, fresh = data, data.slice(0, 0)
        else:
            replacing, fresh = _not_older(dt, data, key, order)
        try:
            # Keys the table does not hold yet are appended: a replaceWhere reads every file for its keys.
            if fresh.num_rows or not replacing.num_rows:  # nothing to write still records the batch's offsets
                write_deltalake(
                    dt,
                    fresh,
                    mode="append",
                    schema_mode="merge",
                    writer_properties=writer_properties(table, fresh.schema),
                    commit_properties=_properties({} if replacing.num_rows else txns, dt),
                )
            if replacing.num_rows:
                _replace_keys(dt, table, replacing, key, txns)
            return True
        except CommitFailedError:
            log.warning("%s: upsert conflict, retrying (%d)", table, attempt + 1)
    raise RuntimeError(f"{table}: upsert still conflicting after {COMMIT_RETRIES} attempts")


# delta-rs overflows its thread's stack (SIGSEGV) planning a replaceWhere whose ``IN`` list holds a few tens of
# thousands of keys (between 20,000 and 40,000 on an 8 MiB stack): larger upserts replace their keys in pieces.
REPLACE_KEYS_MAX = 5_000


def _replace_keys(dt: DeltaTable, table: str, rows: pa.Table, key: str, txns: dict[str, int]) -> None:
    """Replace the stored rows of ``rows``' keys by ``rows``: one commit per ``REPLACE_KEYS_MAX`` keys, the batch's
    application transactions recorded by the last. Until then the batch counts as not committed, and running it
    again replaces the same keys with the same rows."""
    for start in range(0, rows.num_rows, REPLACE_KEYS_MAX):
        piece = rows.slice(start, REPLACE_KEYS_MAX)
        last = start + REPLACE_KEYS_MAX >= rows.num_rows
        keys = ", ".join(str(int(k)) for k in piece[key].to_numpy())
        write_deltalake(
            dt,
            piece,
            mode="overwrite",
            predicate=f"{key} IN ({keys})",
            schema_mode="merge",
            writer_properties=writer_properties(table, rows.schema),
            commit_properties=_properties(txns if last else {}, dt),
        )


def _not_older(dt: DeltaTable, data: pa.Table, key: str, order: str) -> tuple[pa.Table, pa.Table]:
    """The rows of ``data`` whose ``order`` is at least that of the stored row with the same key, and the rows whose
    key the table does not hold."""
    stored = arrow_dataset(dt).to_table(columns=[key, order], filter=ds.field(key).isin(data[key]))
    where = pc.index_in(data[key], stored[key])
    absent = pc.is_null(where)
    if stored.num_rows == 0:
        return data.slice(0, 0), data
    previous = pc.take(stored[order], where)
    newer = pc.and_(pc.invert(absent), pc.fill_null(pc.greater_equal(data[order], previous), True))
    return data.filter(newer), data.filter(absent)
