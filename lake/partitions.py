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
    nights, where = np.unique(np.asarray(night, np.int32), return_inverse=True)  # a year of history: ~365 nights
    days = pa.array(nights - MJD_UNIX_EPOCH, pa.int32()).cast(pa.date32())
    months = pc.strftime(days.cast(pa.timestamp("s")), format="%Y-%m")
    return months.take(pa.array(where.reshape(-1), pa.int32()))


def with_partition_columns(table: str, data: pa.Table) -> pa.Table:
    """``data`` with the table's partition columns, derived from ``night`` where they are missing."""
    if paths.MONTH in paths.PARTITION_COLUMNS[table] and paths.MONTH not in data.column_names:
        night = data[paths.NIGHT].to_numpy(zero_copy_only=False) if data.num_rows else np.array([], np.int32)
        data = data.append_column(paths.MONTH, month_of(night))
    return data
