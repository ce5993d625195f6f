"""A Dask DataFrame over a Delta table's files: the file list from the Delta log, one task per group of files.

The driver prunes files with the Delta log (partition values, min/max statistics) and groups them by size; each
task rebuilds a pyarrow dataset over its few files with their partition values and reads them with the column
projection and row filter pushed down. No task reads the Delta log again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable


@dataclass(frozen=True)
class FileGroup:
    """The files one Dask task reads: paths on ``filesystem`` and each file's partition values."""

    paths: tuple[str, ...]
    partitions: tuple[tuple[tuple[str, Any], ...], ...]


@dataclass(frozen=True)
class ReadSpec:
    """What every task of one frame shares: where, which schema, which columns, which rows."""

    filesystem: pafs.FileSystem
    schema: pa.Schema
    columns: tuple[str, ...] | None
    filters: list[list[tuple[str, str, Any]]] | None
    rows: ds.Expression | None = None  # a further row filter (objects: the current states only)


def _partition_expression(values: tuple[tuple[str, Any], ...], schema: pa.Schema) -> ds.Expression:
    """The equality constraints that tell pyarrow a file's partition values (True for none)."""
    expression = ds.scalar(True)
    for name, value in values:
        field = schema.field(name)
        term = ds.field(name).is_null() if value is None else ds.field(name) == pa.scalar(value, field.type)
        expression = expression & term
    return expression


def read_group(group: FileGroup, spec: ReadSpec) -> pd.DataFrame:
    """Read one group of files into pandas (pyarrow-backed dtypes); runs on a Dask worker."""
    dataset = ds.FileSystemDataset.from_paths(
        list(group.paths),
        schema=spec.schema,
        format=ds.ParquetFileFormat(),
        filesystem=spec.filesystem,
        partitions=[_partition_expression(values, spec.schema) for values in group.partitions],
    )
    expression = pq.filters_to_expression(spec.filters) if spec.filters else None
    if spec.rows is not None:
        expression = spec.rows if expression is None else expression & spec.rows
    columns = list(spec.columns) if spec.columns is not None else None
    table = dataset.to_table(columns=columns, filter=expression)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _groups(dataset: ds.FileSystemDataset, sizes: dict[str, int], partition_bytes: int) -> list[FileGroup]:
    """Consecutive files gathered until ``partition_bytes``; a file's partition values come from its fragment."""
    groups: list[FileGroup] = []
    paths: list[str] = []
    parts: list[tuple[tuple[str, Any], ...]] = []
    filled = 0
    for fragment in dataset.get_fragments():
        paths.append(fragment.path)
        keys = ds.get_partition_keys(fragment.partition_expression)
        parts.append(tuple(sorted(keys.items())))
        filled += sizes.get(fragment.path, partition_bytes)
        if filled >= partition_bytes:
            groups.append(FileGroup(tuple(paths), tuple(parts)))
            paths, parts, filled = [], [], 0
    if paths:
        groups.append(FileGroup(tuple(paths), tuple(parts)))
    return groups


def dask_frame(
    dataset: ds.Dataset,
    dt: DeltaTable,
    columns: Sequence[str] | None,
    filters: list[list[tuple[str, str, Any]]] | None,
    partition_bytes: int,
    rows: ds.Expression | None = None,
) -> dd.DataFrame:
    """The Dask DataFrame of ``dataset`` (a pruned Delta dataset of ``dt``), read in groups of files; ``rows``: a
    further row filter every task applies (``objects``: ``lake.object_states``)."""
    if not isinstance(dataset, ds.FileSystemDataset):
        raise TypeError(f"expected a file-based dataset, got {type(dataset).__name__}")
    schema = dataset.schema
    wanted = list(columns) if columns is not None else schema.names
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise ValueError(f"unknown columns {missing}; the table has {', '.join(schema.names)}")
    meta = schema.empty_table().select(wanted).to_pandas(types_mapper=pd.ArrowDtype)
    # Only the partition values of a file carry into its fragment: keep the (large) statistics out of the graph.
    partition_names = set(dt.metadata().partition_columns)
    adds = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pydict()
    sizes = dict(zip(adds["path"], adds["size_bytes"], strict=True))
    groups = [
        FileGroup(g.paths, tuple(tuple(kv for kv in p if kv[0] in partition_names) for p in g.partitions))
        for g in _groups(dataset, sizes, partition_bytes)
    ]
    if not groups:
        return dd.from_pandas(meta, npartitions=1)
    spec = ReadSpec(dataset.filesystem, schema, tuple(wanted), filters, rows)
    return dd.from_map(read_group, groups, spec=spec, meta=meta, label="read-delta")
