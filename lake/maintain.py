"""Lake maintenance: what each table holds, its history, compaction sorted by ``hpx29``, and vacuum.

Everything here is safe while ingestion runs. Optimize commits only data-preserving rewrites (``dataChange=false``):
blind appends never conflict with them, and a conflict with an upsert is retried (by both sides) after a fresh
look at the table. ``objects`` (append-only, merge-on-read) is folded instead (``lake.fold``), which replaces only
the states it read and keeps those appended meanwhile. Vacuum in its default mode deletes only files the log has
removed, never the files of a write in flight. The one exception is :func:`enable_hpx29_stats`, a metadata change
that makes concurrent writers fail once: run it while ingestion is stopped.

Examples
--------
>>> from nightjar.lake import maintain
>>> for info in maintain.tables(home):  # doctest: +SKIP
...     print(info.table, info.version, info.files, info.rows, info.bytes)
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from nightjar import paths
from nightjar.lake import fold as folding
from nightjar.lake import object_states
from nightjar.lake import tables as lake_tables
from nightjar.lake.access import LakeError, check_table_name, delta_table
from nightjar.lake.commit import lake_lock, log_batch, writer_properties
from nightjar.lake.read import arrow_dataset
from nightjar.progress import Progress
from nightjar.storage import Home, LakeRoot, lake_root

log = logging.getLogger(__name__)

DEFAULT_TARGET_SIZE = 100 * 2**20  # delta-rs's default when the table sets no delta.targetFileSize
OPTIMIZE_RETRIES = 8
STATS_PROPERTY = "delta.dataSkippingStatsColumns"
DEFAULT_STATS_COLUMNS = 32  # Delta's default: statistics on the first 32 columns only


@dataclass(frozen=True)
class TableInfo:
    """One table's current state, from its Delta log."""

    table: str
    version: int
    files: int
    rows: int
    bytes: int
    partitions: int
    hpx29_stats: bool | None  # the log records hpx29 min/max for new files; None: no hpx29 column
    last_commit: datetime


@dataclass(frozen=True)
class HistoryEntry:
    """One commit of a table."""

    version: int
    timestamp: datetime
    operation: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]

    def summary(self) -> str:
        """A short human summary of what the commit did."""
        m = self.metrics
        if self.operation == "OPTIMIZE":
            return f"files -{m.get('numFilesRemoved', 0)} +{m.get('numFilesAdded', 0)}"
        if self.operation == "MERGE":
            return (
                f"+{m.get('num_target_rows_inserted', 0)} rows, {m.get('num_target_rows_updated', 0)} updated, "
                f"files -{m.get('num_target_files_removed', 0)} +{m.get('num_target_files_added', 0)}"
            )
        if "num_added_rows" in m:
            return f"+{m['num_added_rows']} rows, +{m.get('num_added_files', 0)} files"
        if self.operation.startswith("VACUUM"):
            return f"{m.get('numDeletedFiles', m.get('numFilesToDelete', ''))} files"
        text = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        return text if len(text) <= 100 else text[:99] + "…"


@dataclass
class OptimizeReport:
    """What optimize did to one table."""

    table: str
    mode: str  # "z-order hpx29" or "compact"
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    partitions_rewritten: int = 0
    commits: int = 0
    conflicts: int = 0


@dataclass
class VacuumReport:
    """What vacuum deleted (or would delete, with ``dry_run``) from one table."""

    table: str
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False


def _adds(dt: DeltaTable) -> pa.Table:
    return pa.table(dt.get_add_actions(flatten=True))


def _selected(home: Home, table: str | None) -> list[str]:
    if table is not None:
        check_table_name(table)
        delta_table(home, table)  # a clear error if it has no data
        return [table]
    return [t for t in paths.TABLES if lake_tables.exists(home, t)]


def table_info(home: Home, table: str) -> TableInfo:
    """Version, live files, rows, bytes and partitions of ``table``, from its Delta log."""
    dt = delta_table(home, table)
    adds = _adds(dt)
    records = adds["num_records"]
    # A file written without statistics has no record count in the log: count from the Parquet footers then.
    rows = arrow_dataset(dt).count_rows() if records.null_count else int(pc.sum(records).as_py() or 0)
    part_cols = [f"partition.{c}" for c in dt.metadata().partition_columns]
    partitions = len(adds.select(part_cols).group_by(part_cols).aggregate([])) if part_cols else 1
    schema = pa.schema(dt.schema().to_arrow())
    names = schema.names
    stats = paths.HPX29 in _stats_columns(dt, names) if paths.HPX29 in names else None
    return TableInfo(
        table=table,
        version=dt.version(),
        files=adds.num_rows,
        rows=rows,
        bytes=int(pc.sum(adds["size_bytes"]).as_py() or 0),
        partitions=partitions if adds.num_rows else 0,
        hpx29_stats=stats,
        last_commit=datetime.fromtimestamp(dt.history(1)[0]["timestamp"] / 1000, tz=UTC),
    )


def tables(home: Home) -> list[TableInfo]:
    """:func:`table_info` of every table that has data."""
    return [table_info(home, t) for t in _selected(home, None)]


def history(home: Home, table: str, limit: int | None = None) -> list[HistoryEntry]:
    """The commits of ``table``, newest first."""
    dt = delta_table(home, table)
    return [
        HistoryEntry(
            version=int(h["version"]),
            timestamp=datetime.fromtimestamp(h["timestamp"] / 1000, tz=UTC),
            operation=str(h.get("operation", "")),
            parameters=dict(h.get("operationParameters") or {}),
            metrics=dict(h.get("operationMetrics") or {}),
        )
        for h in dt.history(limit)
    ]


# --- optimize -------------------------------------------------------------------------------------------------


def _stats_columns(dt: DeltaTable, names: list[str]) -> list[str]:
    """The columns whose min/max the Delta log records for new files."""
    configured = dt.metadata().configuration.get(STATS_PROPERTY)
    if configured:
        return [c.strip() for c in configured.split(",")]
    data_columns = [n for n in names if n not in dt.metadata().partition_columns]
    return data_columns[:DEFAULT_STATS_COLUMNS]


def enable_hpx29_stats(home: Home, table: str) -> bool:
    """Make the Delta log record ``hpx29`` min/max per file, so readers prune files for cone searches.

    Delta records statistics for the first 32 columns only, and ``hpx29`` comes later. This sets
    ``delta.dataSkippingStatsColumns`` to those columns plus ``hpx29`` and ``hpx_part``; files written from then on
    (and files rewritten by :func:`optimize`) carry the statistics. It is a metadata commit: a writer committing at
    the same moment fails once, so run it while ingestion is stopped. False if nothing needed changing.
    """
    dt = delta_table(home, table)
    schema = pa.schema(dt.schema().to_arrow())
    names = schema.names
    if paths.HPX29 not in names:
        raise LakeError(f"table {table!r} has no {paths.HPX29} column")
    current = _stats_columns(dt, names)
    if paths.HPX29 in current:
        return False
    wanted = current + [c for c in (paths.HPX29, paths.HPX_PART) if c in names and c not in current]
    dt.alter.set_table_properties({STATS_PROPERTY: ",".join(wanted)})
    return True


def _footer_range(filesystem: pafs.FileSystem, path: str, order: str = paths.HPX29) -> tuple[int, int] | None:
    """``order`` (hpx29) min and max of one Parquet file from its footer's row-group statistics."""
    meta = pq.read_metadata(path, filesystem=filesystem)
    column = meta.schema.to_arrow_schema().get_field_index(order)
    if column < 0:
        return None
    stats = [meta.row_group(g).column(column).statistics for g in range(meta.num_row_groups)]
    if not stats or not all(s is not None and s.has_min_max for s in stats):
        return None
    return min(s.min for s in stats), max(s.max for s in stats)


def _dirty_partitions(dt: DeltaTable, target_size: int, order: str = paths.HPX29) -> list[dict[str, Any]]:
    """The partitions (as {column: value}) whose files overlap in ``order`` (hpx29) or hold two or more small
    files.

    Cone searches prune files by their hpx29 range: a partition is done when its files' ranges are disjoint
    and it has at most one file smaller than half the target size. Ranges come from the Delta log's statistics,
    or from the Parquet footers of files the log has none for. When the table asks for hpx29 statistics
    (:func:`enable_hpx29_stats`), a partition with a file lacking them is rewritten too.
    """
    part_cols = dt.metadata().partition_columns
    adds = _adds(dt)
    low, high = f"min.{order}", f"max.{order}"
    nulls = f"null_count.{order}"
    wanted = ["path", "size_bytes", "num_records", *(f"partition.{c}" for c in part_cols), low, high, nulls]
    files = adds.select([c for c in wanted if c in adds.column_names]).to_pydict()
    n = adds.num_rows
    lows: list[Any] = files.get(low, [None] * n)
    highs: list[Any] = files.get(high, [None] * n)
    # A file whose every row lacks the value (ZTF upper limits have no position) has no range, and needs none.
    empty = [c is not None and c == r for c, r in zip(files.get(nulls, [None] * n), files["num_records"], strict=True)]
    by_partition: dict[tuple[Any, ...], list[int]] = {}
    for i in range(n):  # one step per file, not per row
        by_partition.setdefault(tuple(files[f"partition.{c}"][i] for c in part_cols), []).append(i)
    # Once the log is told to keep hpx29 statistics, files written before lack them: rewriting adds them.
    stats_wanted = order == paths.HPX29 and paths.HPX29 in _stats_columns(dt, pa.schema(dt.schema().to_arrow()).names)
    filesystem, root = lake_tables.filesystem_of(dt)
    dirty: list[dict[str, Any]] = []
    for key, members in by_partition.items():
        if stats_wanted and any((lows[i] is None or highs[i] is None) and not empty[i] for i in members):
            dirty.append(dict(zip(part_cols, key, strict=True)))
            continue
        if len(members) < 2:
            continue
        ranges = []
        for i in (m for m in members if not empty[m]):
            known = (lows[i], highs[i]) if lows[i] is not None and highs[i] is not None else None
            ranges.append(known or _footer_range(filesystem, f"{root.rstrip('/')}/{files['path'][i]}", order))
        small = sum(files["size_bytes"][i] < target_size // 2 for i in members)
        if any(r is None for r in ranges):
            overlap = True  # a file of unknown range: sort it in
        else:
            ordered = sorted(r for r in ranges if r is not None)
            overlap = any(nxt[0] < prev[1] for prev, nxt in itertools.pairwise(ordered))
        if overlap or small >= 2:
            dirty.append(dict(zip(part_cols, key, strict=True)))
    return dirty


def _partition_string(value: Any) -> str:
    return "" if value is None else str(value)


def _batches(part_cols: list[str], dirty: list[dict[str, Any]]) -> list[list[tuple[str, str, Any]] | None]:
    """One conjunctive partition filter per optimize commit, covering exactly the dirty partitions."""
    if not part_cols:
        return [None] if dirty else []
    *outer, last = part_cols
    grouped: dict[tuple[str, ...], list[str]] = {}
    for values in dirty:
        grouped.setdefault(tuple(_partition_string(values[c]) for c in outer), []).append(
            _partition_string(values[last])
        )
    return [
        [*((c, "=", v) for c, v in zip(outer, key, strict=True)), (last, "in", sorted(set(inner)))]
        for key, inner in grouped.items()
    ]


def _fold_table(home: Home, table: str, fold_all: bool, snapshot: DeltaTable | None = None) -> OptimizeReport:
    """Fold the merge-on-read ``objects`` table (``lake.fold``): when due, or whenever a state is pending."""
    done = folding.fold(home, table, force=fold_all, snapshot=snapshot)
    after = _adds(delta_table(home, table)).num_rows
    report = OptimizeReport(table, "fold stateSeq", done.version_before, done.version_after, after, after)
    if done.folded:
        report.files_before = _adds(delta_table(home, table, done.version_before)).num_rows
        report.commits = 1
        report.conflicts = done.conflicts
    return report


def _optimize_table(
    home: Home,
    table: str,
    target_size: int | None,
    retries: int,
    snapshot: DeltaTable | None = None,
    fold_all: bool = False,
    concurrency: int | None = None,
) -> OptimizeReport:
    """Optimize one table, starting from ``snapshot`` (default: its latest version); retry on conflicts.

    ``objects`` written by merge-on-read is folded instead (``lake.fold``; ``fold_all``: even when not due): its
    appended files each span the sky, so sorting them would rewrite the whole table every time.
    """
    dt = snapshot if snapshot is not None else delta_table(home, table)
    if table == paths.OBJECTS and object_states.has_states(pa.schema(dt.schema().to_arrow())):
        return _fold_table(home, table, fold_all, snapshot)
    schema = pa.schema(dt.schema().to_arrow())
    names = schema.names
    # Each table is rewritten in its own sort order (hpx29 for positions; diaSourceId for cutouts; diaObjectId for
    # the object history and the per-object tables).
    order = paths.SORT_COLUMNS.get(table, paths.HPX29)
    sort = order in names
    writer = writer_properties(table, schema)
    before = _adds(dt).num_rows
    report = OptimizeReport(
        table, f"z-order {order}" if sort else "compact", dt.version(), dt.version(), before, before
    )
    size = target_size or int(dt.metadata().configuration.get("delta.targetFileSize") or DEFAULT_TARGET_SIZE)
    while True:
        try:
            if not sort:
                metrics = dt.optimize.compact(
                    target_size=size, writer_properties=writer, max_concurrent_tasks=concurrency
                )
                report.commits += int(metrics.get("numFilesAdded", 0) > 0)
            else:
                batches = _batches(dt.metadata().partition_columns, _dirty_partitions(dt, size, order))
                for filters in batches:
                    metrics = dt.optimize.z_order(
                        [order],
                        partition_filters=filters,
                        target_size=size,
                        writer_properties=writer,
                        max_concurrent_tasks=concurrency,
                    )
                    report.commits += 1
                    report.partitions_rewritten += int(metrics.get("partitionsOptimized", 0))
            break
        except CommitFailedError as exc:
            # A concurrent merge removed a file this rewrite also removes: look again and redo what is left.
            report.conflicts += 1
            if report.conflicts > retries:
                raise RuntimeError(f"{table}: optimize still conflicting after {retries} retries: {exc}") from exc
            log.info("%s: optimize conflict (%s), retrying", table, exc)
            time.sleep(min(2.0, 0.05 * 2**report.conflicts) * (0.5 + random.random()))
            dt = delta_table(home, table)
    dt = delta_table(home, table)
    report.version_after = dt.version()
    report.files_after = _adds(dt).num_rows
    return report


def optimize(
    home: Home,
    table: str | None = None,
    *,
    target_size: int | None = None,
    retries: int = OPTIMIZE_RETRIES,
    progress: Progress | None = None,
    fold_all: bool = False,
    concurrency: int | None = None,
) -> list[OptimizeReport]:
    """Compact small files and sort every partition by ``hpx29``; all tables when ``table`` is None.

    ``objects`` (append-only, merge-on-read) is folded to each object's newest state instead, when the states
    appended since its last fold are due (``lake.fold``), or whenever any is pending with ``fold_all`` (the CLI).
    ``concurrency``: files rewritten at once (delta-rs's ``max_concurrent_tasks``; default: one per core); each
    holds its files' rows in memory.

    Tables with an ``hpx29`` column are z-ordered on it (on one column: sorted) partition by partition, and only
    where the files' hpx29 ranges overlap or small files accumulate; other tables are bin-packed. Rows, values
    and table contents are unchanged; commits conflicting with concurrent merges are retried. When anything was
    rewritten, a new lake version is logged (between batch commits), so readers of the latest lake (the API,
    queries) read the compacted files at once instead of at the next batch.

    Examples
    --------
    >>> [r.files_after for r in optimize(home)]  # doctest: +SKIP
    [3, 1]
    """
    root = home if isinstance(home, LakeRoot) else Path(home)
    selected = _selected(root, table)
    reports = []
    for done, name in enumerate(selected):
        if progress is not None:
            progress(done, len(selected))
        reports.append(_optimize_table(root, name, target_size, retries, fold_all=fold_all, concurrency=concurrency))
    if progress is not None:
        progress(len(selected), len(selected))
    if any(r.commits for r in reports) and lake_tables.exists(root, paths.LAKE_LOG):
        with lake_lock(root):
            log_batch(root, {})
    return reports


# --- vacuum ---------------------------------------------------------------------------------------------------


def vacuum(
    home: Home, table: str | None = None, *, retention_hours: int | None = None, dry_run: bool = False
) -> list[VacuumReport]:
    """Delete the files the log removed more than ``retention_hours`` ago; all tables when ``table`` is None.

    ``retention_hours`` None keeps the table's retention (7 days by default). Time travel (``as_of``) to a
    version older than the retention is no longer possible afterwards. Files a concurrent writer has not
    committed yet are never touched.
    """
    reports = []
    lake = home if isinstance(home, LakeRoot) else Path(home)
    for name in _selected(lake, table):
        dt = delta_table(lake, name)
        options: dict[str, Any] = {"retention_hours": retention_hours, "enforce_retention_duration": False}
        if retention_hours is None:
            options = {"enforce_retention_duration": True}
        elif retention_hours < 0:
            raise LakeError("--retention-hours must be 0 or more")
        candidates = dt.vacuum(dry_run=True, **options)
        where = lake_root(lake)
        filesystem, folder = where.filesystem(), where.fs_path(where.table_uri(name))
        infos = filesystem.get_file_info([f"{folder}/{c}" for c in candidates])
        size = sum(i.size or 0 for i in infos)
        removed = candidates if dry_run else dt.vacuum(dry_run=False, **options)
        reports.append(VacuumReport(name, sorted(removed), size, dry_run))
    return reports
