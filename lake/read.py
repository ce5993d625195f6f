"""Read the lake: one consistent set of Arrow datasets over the Delta tables, for DuckDB, Dask or pyarrow."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
from deltalake import DeltaTable

from nightjar import paths


def existing_tables(home: Path) -> list[str]:
    """The lake tables that have at least one commit."""
    return [t for t in paths.TABLES if DeltaTable.is_deltatable(str(paths.table_dir(home, t)))]


def datasets(home: Path) -> dict[str, ds.Dataset]:
    """Each existing lake table as a pyarrow dataset at its latest version."""
    return {t: DeltaTable(str(paths.table_dir(home, t))).to_pyarrow_dataset() for t in existing_tables(home)}


def table_versions(home: Path) -> dict[str, int]:
    return {t: DeltaTable(str(paths.table_dir(home, t))).version() for t in existing_tables(home)}
