"""Open and locate the lake's Delta tables, locally or on object storage (``nightjar.storage``).

Every reader and writer of a lake table gets its ``DeltaTable`` or its URI and storage options here, so a lake on
``s3://`` works wherever a local one does.
"""

from __future__ import annotations

import pyarrow.fs as pafs
from deltalake import DeltaTable

from nightjar import paths, storage
from nightjar.storage import Home, LakeRoot, lake_root


def uri(home: Home, table: str) -> str:
    """Where the Delta table ``table`` of ``home``'s lake lives."""
    return lake_root(home).table_uri(table)


def options(home: Home) -> dict[str, str] | None:
    """The storage options of ``home``'s lake, for delta-rs calls given a URI (None: local, or from the
    environment)."""
    return lake_root(home).storage_options


def exists(home: Home, table: str) -> bool:
    """True when ``table`` has at least one commit."""
    root = lake_root(home)
    return DeltaTable.is_deltatable(root.table_uri(table), storage_options=root.storage_options)


def open_table(home: Home, table: str, version: int | None = None) -> DeltaTable | None:
    """The Delta table ``table`` (latest, or at ``version``); None if it has no commit yet."""
    root = lake_root(home)
    location = root.table_uri(table)
    if not DeltaTable.is_deltatable(location, storage_options=root.storage_options):
        return None
    return DeltaTable(location, version=version, storage_options=root.storage_options)


def load(home: Home, table: str, version: int | None = None) -> DeltaTable:
    """The Delta table ``table`` (latest, or at ``version``), which must exist."""
    root = lake_root(home)
    return DeltaTable(root.table_uri(table), version=version, storage_options=root.storage_options)


def target(home: Home, table: str) -> tuple[str | DeltaTable, dict[str, str] | None]:
    """What ``write_deltalake`` writes to for ``table``: the existing table, or its URI and storage options."""
    dt = open_table(home, table)
    return (dt, None) if dt is not None else (uri(home, table), options(home))


def is_lake(home: Home) -> bool:
    """True when ``home``'s lake exists: its local folder, or any table on object storage."""
    root: LakeRoot = lake_root(home)
    if root.is_local:
        return root.path.is_dir()
    return any(exists(root, t) for t in (paths.LAKE_LOG, *paths.TABLES))


def filesystem_of(dt: DeltaTable) -> tuple[pafs.FileSystem, str]:
    """A pyarrow file system reaching ``dt``'s files (with the table's own storage options), and the table's
    folder on it."""
    location = dt.table_uri
    if storage.is_uri(location):
        root = LakeRoot(location, getattr(dt, "_storage_options", None) or {})
        return root.filesystem(), root.fs_path(root.uri)
    return pafs.FileSystem.from_uri(location)
