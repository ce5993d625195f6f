"""The ``tns`` and ``crossmatch_tns`` lake tables, replaced together by each TNS import.

Both tables are overwritten under the lake's commit lock, then one lake snapshot is logged: a reader of the lake
(which reads the tables at a logged snapshot) sees the old TNS and its matches or the new ones, never a mix.
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import write_deltalake

from nightjar import paths
from nightjar.lake import commit, tables
from nightjar.lake.read import arrow_dataset
from nightjar.lake.schemas import CROSSMATCH_TNS_SCHEMA
from nightjar.storage import Home


def _overwrite(home: Home, table: str, data: pa.Table) -> None:
    data = commit.laid_out(table, data)
    target, options = tables.target(home, table)
    write_deltalake(
        target,
        data,
        storage_options=options,
        mode="overwrite",
        schema_mode="overwrite",
        writer_properties=commit.writer_properties(table, data.schema),
    )


def replace_tns(home: Home, tns: pa.Table, matches: pa.Table) -> None:
    """Replace ``tns`` and ``crossmatch_tns`` in one lake snapshot (call under ``commit.lake_lock``)."""
    _overwrite(home, paths.TNS, tns)
    _overwrite(home, paths.CROSSMATCH_TNS, matches.cast(CROSSMATCH_TNS_SCHEMA))
    commit.log_batch(home, {})


def read_table(home: Home, table: str) -> pa.Table | None:
    """The latest version of ``tns`` or ``crossmatch_tns``; None before the first import."""
    dt = tables.open_table(home, table)
    return arrow_dataset(dt).to_table() if dt is not None else None
