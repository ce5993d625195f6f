"""Read the lake: one consistent set of Arrow datasets over the Delta tables, for DuckDB, Dask or pyarrow."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import DeltaTable

from nightjar import paths
from nightjar.errors import UserError
from nightjar.lake import object_states
from nightjar.lake import tables as lake_tables
from nightjar.lake.region import pixel_ranges, ranges_filter
from nightjar.storage import Home

DETECTION_COLUMNS = ["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "reliability"]


def arrow_dataset(dt: DeltaTable, **options: Any) -> ds.Dataset:
    """``dt`` as a pyarrow dataset read by Arrow's own file system.

    deltalake's default file system is a Python object that Arrow's I/O threads call back into; a scan that a
    reader abandons (DuckDB stops pulling after a ``LIMIT``) keeps such threads reading, and at interpreter
    exit they call into a half-finalised interpreter (SIGSEGV, aborts, hangs). Arrow's native local file
    system runs no Python on those threads, nor does its S3 client (a lake on object storage). ``options`` are
    passed to ``DeltaTable.to_pyarrow_dataset``.
    """
    uri = dt.table_uri
    local = unquote(uri.removeprefix("file://")) if uri.startswith("file://") else uri
    if "://" not in local:
        options.setdefault("filesystem", pafs.SubTreeFileSystem(str(Path(local).resolve()), pafs.LocalFileSystem()))
    else:  # object storage: Arrow's native S3 client, with the table's own storage options
        filesystem, folder = lake_tables.filesystem_of(dt)
        options.setdefault("filesystem", pafs.SubTreeFileSystem(folder, filesystem))
    return dt.to_pyarrow_dataset(**options)


def table_dataset(dt: DeltaTable, table: str, **options: Any) -> ds.Dataset:
    """``dt`` as the rows a reader of ``table`` sees: ``arrow_dataset``, and for ``objects`` only each object's
    newest state (``lake.object_states``: the table is append-only, merge-on-read)."""
    dataset = arrow_dataset(dt, **options)
    return object_states.current(dt, dataset) if table == paths.OBJECTS else dataset


def existing_tables(home: Home) -> list[str]:
    """The lake tables that have at least one commit."""
    return [t for t in paths.TABLES if lake_tables.exists(home, t)]


def log_time(dt: DeltaTable, version: int) -> datetime | None:
    """The ``commitInfo`` timestamp of ``version``'s commit file of ``dt``; None if the log does not have it (any
    more)."""
    filesystem, root = lake_tables.filesystem_of(dt)
    try:
        with filesystem.open_input_stream(f"{root.rstrip('/')}/_delta_log/{version:020d}.json") as f:
            lines = f.read().decode().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info and "timestamp" in info:
            return datetime.fromtimestamp(info["timestamp"] / 1000, tz=UTC)
    return None


def version_at(dt: DeltaTable, moment: datetime) -> int | None:
    """The newest version of ``dt`` committed at or before ``moment``; None if the table is younger.

    Commit times are the ``commitInfo`` timestamps (those ``history()`` reports). delta-rs resolves a moment by
    the commit files' modification times, which lag the timestamps by a few milliseconds, so its answer is only
    the starting point: step forward or back while a neighbouring commit's timestamp says so. ``dt`` is left
    loaded at some version; load the answer yourself.
    """
    latest = dt.version()
    dt.load_as_version(moment)
    version = dt.version()
    while version < latest and (later := log_time(dt, version + 1)) is not None and later <= moment:
        version += 1
    while version >= 0 and (committed := log_time(dt, version)) is not None and committed > moment:
        version -= 1
    return version if version >= 0 else None


AsOf = int | datetime | None


class SnapshotError(UserError):
    """A lake version or time the lake does not have."""


def snapshot(home: Home, as_of: AsOf = None) -> dict[str, int]:
    """The version of each table in one consistent lake state.

    ``as_of`` is a lake version (the ``lake_log`` version, one per committed batch), a time (the lake as it was
    then), or None (the latest complete batch).
    """
    log = lake_tables.open_table(home, paths.LAKE_LOG)
    if log is None:
        if as_of is not None:
            raise SnapshotError("the lake has no history yet")
        return {}
    if isinstance(as_of, datetime):
        version = version_at(log, as_of)
        if version is None:
            return {}  # before the lake's first batch: every table empty
        log.load_as_version(version)
    elif as_of is not None:
        try:
            log.load_as_version(as_of)
        except Exception as exc:
            raise SnapshotError(f"the lake has no version as of {as_of}: {exc}") from None
    rows = log.to_pyarrow_table(columns=["committedAt", "versions"]).sort_by("committedAt")
    if rows.num_rows == 0:
        return {}
    versions: dict[str, int] = json.loads(rows["versions"][-1].as_py())
    return versions


def lake_version(home: Home) -> int | None:
    """The lake's version (its lake log's table version); None before the first commit."""
    log = lake_tables.open_table(home, paths.LAKE_LOG)
    return log.version() if log is not None else None


def datasets(home: Home, as_of: AsOf = None) -> dict[str, ds.Dataset]:
    """Each lake table as a pyarrow dataset, all from the same lake snapshot (see ``snapshot``)."""
    versions = snapshot(home, as_of)
    out = {}
    for table in existing_tables(home):
        if table not in versions and as_of is not None:
            continue  # the table did not exist yet (its view is an empty placeholder)
        out[table] = table_dataset(lake_tables.load(home, table, versions.get(table)), table)
    return out


def table_schemas(home: Home, tables: Iterable[str]) -> dict[str, pa.Schema]:
    """The Arrow schema of each of ``tables`` the lake has, from the Delta log alone (no data file is read).

    A table's schema is every column any batch ever wrote to it: a lake that ingested ZTF alerts has ZTF's own
    columns (``magpsf``, ``objectId``...) beside LSST's.
    """
    out = {}
    for table in tables:
        dt = lake_tables.open_table(home, table)
        if dt is not None:
            out[table] = pa.schema(dt.schema().to_arrow())
    return out


def table_versions(home: Home) -> dict[str, int]:
    """The current version of each table the lake holds."""
    return {t: lake_tables.load(home, t).version() for t in existing_tables(home)}


def detections_of(home: Home, object_ids: np.ndarray, hpx29: np.ndarray, region_order: int = 5) -> pa.Table:
    """Every detection in the lake of the given objects (``hpx29``: their positions, to prune the read)."""
    dt = lake_tables.open_table(home, paths.SOURCES) if len(object_ids) else None
    if dt is None:
        return pa.table({c: pa.array([], t) for c, t in zip(DETECTION_COLUMNS, _DETECTION_TYPES, strict=True)})
    where = ds.field("diaObjectId").isin(pa.array(np.unique(object_ids), pa.int64()))
    region = ranges_filter(pixel_ranges(hpx29, region_order))
    if region is not None:
        where = region & where
    return arrow_dataset(dt).to_table(columns=DETECTION_COLUMNS, filter=where)


_DETECTION_TYPES = [pa.int64(), pa.float64(), pa.string(), pa.float32(), pa.float32(), pa.float32()]


def datasets_as_of(home: Home, as_of: AsOf) -> dict[str, ds.Dataset]:
    """The lake's tables in one snapshot: the latest (None), a lake version (int) or a time (see ``snapshot``)."""
    return datasets(home, as_of)


def rows_of_objects(
    home: Home, table: str, object_ids: np.ndarray, columns: list[str] | None = None
) -> pa.Table | None:
    """The rows of ``table`` (``context``, ``context_matches``, ``annotations``…) for the given diaObjectIds, or
    None when the table does not exist yet. These tables are sorted by diaObjectId, so row-group statistics prune.
    For ``objects``, each object's newest state (every state of the asked objects is read, the newest kept)."""
    dt = lake_tables.open_table(home, table)
    if dt is None:
        return None
    where = ds.field("diaObjectId").isin(pa.array(np.unique(object_ids), pa.int64()))
    dataset = arrow_dataset(dt)
    if table != paths.OBJECTS or not object_states.has_states(dataset.schema):
        return dataset.to_table(columns=columns, filter=where)
    wanted = None if columns is None else list(dict.fromkeys([*columns, "diaObjectId", paths.STATE_SEQ]))
    rows = object_states.newest(dataset.to_table(columns=wanted, filter=where))
    return rows if columns is None else rows.select(columns)


def latest_detections(home: Home, objects: pa.Table, region_order: int = 5) -> pa.Table | None:
    """The lake's ``sources`` row of each object's newest detection (``objects``: lastDiaSourceId, hpx29)."""
    dt = lake_tables.open_table(home, paths.SOURCES) if objects.num_rows else None
    if dt is None:
        return None
    ids = pc.drop_null(objects["lastDiaSourceId"])
    where = ds.field("diaSourceId").isin(ids)
    region = ranges_filter(pixel_ranges(objects[paths.HPX29].to_numpy(zero_copy_only=False), region_order))
    if region is not None:
        where = region & where
    return arrow_dataset(dt).to_table(filter=where)
