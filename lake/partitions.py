"""The lake's time partitions computed from the rows themselves (see ``paths.PARTITION_COLUMNS``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths

MJD_UNIX_EPOCH = 40587  # the MJD of 1970-01-01


def month_of(night: np.ndarray) -> pa.Array:
    """The "YYYY-MM" (calendar month) of integer MJD nights.

    >>> month_of(np.array([60940, 60979])).to_pylist()
    ['2025-09', '2025-10']
    """
    days = pa.array(np.asarray(night, np.int32) - MJD_UNIX_EPOCH, pa.int32()).cast(pa.date32())
    return pc.strftime(days.cast(pa.timestamp("s")), format="%Y-%m")


def with_partition_columns(table: str, data: pa.Table) -> pa.Table:
    """``data`` with the table's partition columns, derived from ``night`` where they are missing."""
    if paths.MONTH in paths.PARTITION_COLUMNS[table] and paths.MONTH not in data.column_names:
        night = data[paths.NIGHT].to_numpy(zero_copy_only=False) if data.num_rows else np.array([], np.int32)
        data = data.append_column(paths.MONTH, month_of(night))
    return data
