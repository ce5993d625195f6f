"""Folding the append-only ``objects`` table: rewrite it to each object's newest state (``lake.object_states``).

Batches append object states and never rewrite stored files; folding removes the superseded states in the
background, so that reads stay cheap. A fold reads one version of the table, keeps its current rows (sorted by
``hpx29``, so cone searches prune), and replaces exactly the rows it read: Delta's replaceWhere on
``stateSeq <= top`` (``top``: the largest ``stateSeq`` it read). States appended meanwhile carry larger sequence
numbers (``lake.commit.append_states``), so they match no predicate of the fold and stay; two folds at once
remove the same files and Delta makes the second retry. After its commit the fold records ``top`` as the table's
folded sequence (a property, set under the lake lock, so batch commits never meet a metadata conflict): readers
then treat the folded rows as one per object.

Scheduling keeps the amortised cost per batch flat: the background fold runs only when the rows appended since
the last fold exceed ``fraction`` of the folded rows. A fold costs about the table's size, and the table must grow
by that fraction between two folds, so the rewrite per appended row is bounded (about ``(1 + fraction) /
fraction`` rows), whatever the lake's size.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from nightjar import paths
from nightjar.lake import object_states, tables
from nightjar.lake.commit import COMMIT_RETRIES, lake_lock, writer_properties
from nightjar.lake.read import arrow_dataset
from nightjar.storage import Home, lake_root

log = logging.getLogger(__name__)

FOLD_FRACTION = 0.1
"""Fold when the pending states exceed this fraction of the folded rows (readers filter at most that many)."""
FOLD_RETRIES = 5
FOLD_MEMORY_LIMIT = "1GB"
"""DuckDB's memory for the fold's sort by ``hpx29``; beyond it, the sort spills to ``DUCKDB_TEMP_DIR``."""
STATS_PROPERTY = "delta.dataSkippingStatsColumns"


@dataclass
class FoldReport:
    """What one fold did (``folded`` False: nothing was due, or nothing pending)."""

    table: str
    folded: bool
    version_before: int
    version_after: int
    rows_before: int
    rows_after: int
    pending_rows: int
    top: int = 0
    seconds: float = 0.0
    conflicts: int = 0


def counts(dt: DeltaTable) -> tuple[int, int]:
    """(pending rows, all rows) of the objects table at ``dt``'s version, from the Delta log where it has
    ``stateSeq`` statistics (each appended file holds one write's states), else by reading that column."""
    folded = object_states.folded_seq(dt)
    adds = pa.table(dt.get_add_actions(flatten=True))
    total = int(pc.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0
    high = f"max.{paths.STATE_SEQ}"
    if adds.num_rows == 0:
        return 0, 0
    if high in adds.column_names and adds[high].null_count == 0 and adds["num_records"].null_count == 0:
        pending = pc.sum(pc.if_else(pc.greater(adds[high], folded), adds["num_records"], 0)).as_py()
        return int(pending or 0), total
    dataset = arrow_dataset(dt)
    if not object_states.has_states(dataset.schema):
        return 0, total
    return dataset.count_rows(filter=object_states._pending_filter(folded)), total


def due(dt: DeltaTable, fraction: float = FOLD_FRACTION) -> bool:
    """True when the pending states exceed ``fraction`` of the folded rows."""
    pending, total = counts(dt)
    return pending > 0 and pending > fraction * (total - pending)


def _current_rows(home: Home, dt: DeltaTable) -> tuple[pa.RecordBatchReader, int, duckdb.DuckDBPyConnection]:
    """The current rows of ``dt``'s version sorted by ``hpx29`` (a stream: DuckDB sorts out of core), and the
    largest ``stateSeq`` among all rows read."""
    raw = arrow_dataset(dt)
    top_row = raw.to_table(columns=[paths.STATE_SEQ])[paths.STATE_SEQ]
    top = int(pc.max(top_row).as_py() or 0)  # pending rows exist, so there is a largest
    rows = object_states.current(dt, raw)
    con = duckdb.connect(":memory:")
    root = lake_root(home)
    # DuckDB spills to the home beside a local lake, else to this machine's temporary folder.
    temp = (root.path.parent if root.is_local else Path(tempfile.gettempdir())) / paths.DUCKDB_TEMP_DIR
    temp.mkdir(parents=True, exist_ok=True)
    con.execute("SET temp_directory = ?", [str(temp)])
    # The sort spills to the temporary folder beyond this: a fold runs beside ingestion, on a worker.
    con.execute("SET memory_limit = ?", [FOLD_MEMORY_LIMIT])
    con.execute("SET python_enable_replacements = false")
    con.register("current_rows", rows)
    order = paths.SORT_COLUMNS[paths.OBJECTS]
    sort = f' ORDER BY "{order}"' if order in rows.schema.names else ""
    result = con.sql(f"SELECT * FROM current_rows{sort}").to_arrow_reader(65_536)
    schema = rows.schema
    # DuckDB's Arrow output may name types its own way (string views...): give the batches the table's types.
    if result is None:
        raise RuntimeError("DuckDB returned no result for the fold's query")
    batches = (batch.cast(schema) for batch in result)
    return pa.RecordBatchReader.from_batches(schema, batches), top, con


def _record_fold(home: Home, table: str, top: int) -> None:
    """Set the table's folded sequence to ``top`` (never lower it), and keep ``stateSeq`` statistics in the log,
    under the lake lock: batch commits run under it, so none meets this metadata commit."""
    with lake_lock(home):
        dt = tables.load(home, table)
        wanted: dict[str, str] = {}
        if object_states.folded_seq(dt) < top:
            wanted[object_states.FOLDED_PROPERTY] = str(top)
        stats = dt.metadata().configuration.get(STATS_PROPERTY)
        if stats and paths.STATE_SEQ not in [c.strip() for c in stats.split(",")]:
            wanted[STATS_PROPERTY] = f"{stats},{paths.STATE_SEQ}"
        if wanted:
            dt.alter.set_table_properties(wanted, raise_if_not_exists=False)


def fold(
    home: Home,
    table: str = paths.OBJECTS,
    *,
    force: bool = False,
    fraction: float = FOLD_FRACTION,
    snapshot: DeltaTable | None = None,
) -> FoldReport:
    """Fold the table to one row per object, if due (``force``: whenever any state is pending).

    Safe while batches commit: see the module's description. Conflicting commits are retried from a fresh look.
    ``snapshot``: the version to fold (default: the latest), as a fold that started before later commits.
    """
    started = time.perf_counter()
    dt = snapshot if snapshot is not None else tables.load(home, table)
    report = FoldReport(table, False, dt.version(), dt.version(), 0, 0, 0)
    for attempt in range(FOLD_RETRIES + 1):
        pending, total = counts(dt)
        report.pending_rows, report.rows_before = pending, total
        if pending == 0 or not (force or pending > fraction * (total - pending)):
            report.version_after = dt.version()
            report.rows_after = total
            return report
        reader, top, con = _current_rows(home, dt)
        try:
            write_deltalake(
                dt,
                reader,
                mode="overwrite",
                predicate=f'"{paths.STATE_SEQ}" <= {top} OR "{paths.STATE_SEQ}" IS NULL',
                schema_mode="merge",
                writer_properties=writer_properties(table, reader.schema),
                commit_properties=CommitProperties(max_commit_retries=COMMIT_RETRIES),
            )
        except CommitFailedError as exc:  # another fold removed these files first: look again
            report.conflicts += 1
            if attempt == FOLD_RETRIES:
                raise
            log.info("%s: fold conflict (%s), retrying", table, exc)
            dt = tables.load(home, table)
            continue
        finally:
            con.close()
        _record_fold(home, table, top)
        after = tables.load(home, table)
        report.folded, report.top = True, top
        report.version_after = after.version()
        report.rows_after = counts(after)[1]
        report.seconds = time.perf_counter() - started
        log.info(
            "%s: folded %d rows (%d pending) to %d in %.1f s", table, total, pending, report.rows_after, report.seconds
        )
        return report
    raise AssertionError("unreachable")
