"""Read the lake: one consistent set of Arrow datasets over the Delta tables, for DuckDB, Dask or pyarrow."""

from __future__ import annotations

from datetime import datetime
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


def datasets_as_of(home: Path, as_of: int | datetime | None) -> dict[str, ds.Dataset]:
    """Each lake table as it was: at Delta version ``as_of`` (an int) or at a UTC time (a datetime).

    A table that did not exist yet at that time is left out (queries see it empty); a version a table never had
    is a ValueError naming the versions it has.
    """
    if as_of is None:
        return datasets(home)
    out = {}
    for table in existing_tables(home):
        dt = DeltaTable(str(paths.table_dir(home, table)))
        latest = dt.version()
        if isinstance(as_of, int) and not 0 <= as_of <= latest:
            raise ValueError(f"table {table} has versions 0 to {latest}, not {as_of}")
        dt.load_as_version(as_of)
        if isinstance(as_of, datetime) and dt.version() == 0:
            created = dt.history(1)[0].get("timestamp")
            if created is not None and created > as_of.timestamp() * 1000:
                continue  # the table was created after that time
        out[table] = dt.to_pyarrow_dataset()
    return out
