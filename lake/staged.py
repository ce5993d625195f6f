"""Append files written before the lake lock, committed inside it.

A batch's cutouts (~150 MB for 2,000 heavy alerts) take longer to write than anything else the commit does, and
nothing about them depends on what other batches commit. So their Parquet files are written first, by pyarrow,
into the table's folder, while another batch holds the lake lock; the commit under the lock only adds them to
the Delta log (``DeltaTable.create_write_transaction``), with the batch's application transactions. A file
written by a process that dies before the commit is in no table version: readers never see it, and
``DeltaTable.vacuum`` removes it.

On a local lake each file is flushed to disk before the commit can name it, and its pages then leave the page
cache (``_flush_and_release``): nothing in the pipeline reads a batch's cutouts back, and pages the kernel takes
back are what the next files are written into. Otherwise the cache grows by every file written, and on this
project's 2-core VM a page never used before costs several times one reused: 150 MB written with ``os.write`` took
0.40-0.45 s of CPU per file into a growing cache, and 0.05-0.15 s per file once each file's pages were released
after it (8 files each way, docs/lake.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from nightjar import paths
from nightjar.lake import tables
from nightjar.storage import Home, lake_root

# Partition values that need no escaping in a file path (delta-rs escapes others its own way).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class StagedFiles:
    """Parquet files in a table's folder that no table version holds yet, and the rows they hold."""

    table: str
    rows: int
    actions: list[AddAction | RemoveAction]  # only additions
    files: list[str]  # paths on ``filesystem``
    seconds: float = 0.0  # spent writing them
    filesystem: pafs.FileSystem = field(default_factory=pafs.LocalFileSystem)

    def discard(self) -> None:
        """Delete the staged files (those already gone are no error)."""
        for file in self.files:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(file)


def stage(home: Home, table: str, data: pa.Table) -> StagedFiles | None:
    """Write ``data`` (already laid out: partition columns, sort order) as the table's Parquet files, one per
    partition, with the same layout as delta-rs writes them. None when the table does not exist yet, or when the
    rows do not fit its schema as it is (a new column): the commit then writes them itself."""
    dt = tables.open_table(home, table) if data.num_rows else None
    if dt is None:
        return None
    schema = pa.schema(dt.schema().to_arrow())
    if set(schema.names) != set(data.column_names):
        return None
    try:
        data = data.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    partition_by = list(dt.metadata().partition_columns)
    stats_columns = _stats_columns(dt, schema, partition_by)
    root = lake_root(home)
    filesystem = root.filesystem()
    location = root.fs_path(root.table_uri(table))
    staged = StagedFiles(table, data.num_rows, [], [], filesystem=filesystem)
    try:
        for values, rows in _partitions(data, partition_by):
            if any(v is not None and not _PLAIN_VALUE.fullmatch(v) for v in values.values()):
                staged.discard()
                return None
            folder = "/".join(f"{k}={'__HIVE_DEFAULT_PARTITION__' if v is None else v}" for k, v in values.items())
            name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            relative = f"{folder}/{name}" if folder else name
            file = f"{location}/{relative}"
            if root.is_local:
                filesystem.create_dir(file.rpartition("/")[0], recursive=True)
            staged.files.append(file)
            pq.write_table(
                rows.drop_columns(partition_by),
                file,
                filesystem=filesystem,
                row_group_size=paths.ROW_GROUP_ROWS.get(table, 8192),
                compression="snappy",
                use_dictionary=[f.name for f in rows.schema if not _is_binary(f.type)],
                write_statistics=[f.name for f in rows.schema if not _is_binary(f.type)],
            )
            if root.is_local:
                _flush_and_release(file)
            staged.actions.append(
                AddAction(
                    relative,
                    filesystem.get_file_info(file).size,
                    values,
                    int(time.time() * 1000),
                    True,
                    json.dumps(_stats(rows, stats_columns)),
                )
            )
    except BaseException:
        staged.discard()
        raise
    return staged


def _flush_and_release(path: str) -> None:
    """Flush a written file to disk (the commit that names it then never names a file a crash of the machine could
    lose), and drop its pages from the page cache, for the next files to be written into."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)


def _partitions(data: pa.Table, partition_by: list[str]) -> list[tuple[dict[str, str | None], pa.Table]]:
    """The rows of each partition, with the partition's values as the Delta log writes them (strings). ``data``
    is laid out (``commit.laid_out``): each partition's rows are contiguous, so each part is a slice, not a copy."""
    if not partition_by:
        return [({}, data)]
    change = np.zeros(data.num_rows, dtype=bool)
    for column in partition_by:
        values = data[column].combine_chunks()
        change[1:] |= pc.fill_null(pc.not_equal(values[1:], values[:-1]), False).to_numpy(zero_copy_only=False)
        valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
        change[1:] |= valid[1:] != valid[:-1]
    starts = np.flatnonzero(np.concatenate([[True], change[1:]])) if data.num_rows else np.array([], np.int64)
    parts = []
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), data.num_rows], strict=True):
        rows = data.slice(start, end - start)
        key = {c: rows[c][0].as_py() for c in partition_by}
        parts.append(({c: None if v is None else str(v) for c, v in key.items()}, rows))
    if len({tuple(values.items()) for values, _ in parts}) != len(parts):
        raise ValueError("staged rows are not grouped by partition (lay them out with commit.laid_out)")
    return parts


def _stats_columns(dt: DeltaTable, schema: pa.Schema, partition_by: list[str]) -> list[str]:
    named = dt.metadata().configuration.get("delta.dataSkippingStatsColumns")
    wanted = named.split(",") if named else schema.names[:32]
    return [c for c in wanted if c in schema.names and c not in partition_by]


def _stats(rows: pa.Table, columns: list[str]) -> dict[str, Any]:
    """Delta file statistics: row count, and min/max/null count of the integer, float and string columns."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in columns:
        column = rows[name]
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind)):
            continue
        nulls[name] = column.null_count
        extremes = pc.min_max(column).as_py()
        lo, hi = extremes["min"], extremes["max"]
        if lo is None or (isinstance(lo, float) and not (math.isfinite(lo) and math.isfinite(hi))):
            continue
        low[name], high[name] = lo, hi
    return {"numRecords": rows.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls}
