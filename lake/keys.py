"""One row per key of an Arrow table: the single definition that the lake commit (upserts, appends) and the batch
views that streaming filters read both use, so a filter sees the row the lake stores.

Ties go to the later row: within a batch, rows arrive in Kafka order, so the later of two equal versions of an
object is the one sent last (and the lake's upsert likewise lets a row replace a stored one that is not newer).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def latest_per_key(data: pa.Table, key: str, order: str) -> pa.Table:
    """One row per ``key``: the one with the largest ``order``; ties go to the later row. Rows keep their order.

    Examples
    --------
    >>> t = pa.table({"id": [1, 1, 2, 1], "t": [5.0, 7.0, 1.0, 7.0], "v": ["a", "b", "c", "d"]})
    >>> latest_per_key(t, "id", "t")["v"].to_pylist()
    ['c', 'd']
    """
    if data.num_rows == 0:
        return data
    ranked = data.select([key, order]).append_column("_pos", pa.array(np.arange(data.num_rows), pa.int64()))
    ranked = ranked.sort_by([(key, "ascending"), (order, "descending"), ("_pos", "descending")])
    first = ranked.group_by(key, use_threads=False).aggregate([("_pos", "first")])
    return data.take(np.sort(first["_pos_first"].to_numpy()))


def first_per_key(data: pa.Table, key: str) -> pa.Table:
    """One row per ``key``: the first in ``data``'s order (put preferred rows first).

    Examples
    --------
    >>> first_per_key(pa.table({"id": [2, 1, 2], "v": ["a", "b", "c"]}), "id")["v"].to_pylist()
    ['a', 'b']
    """
    if data.num_rows == 0:
        return data
    positions = data.select([key]).append_column("_pos", pa.array(np.arange(data.num_rows), pa.int64()))
    first = positions.group_by(key, use_threads=False).aggregate([("_pos", "min")])
    return data.take(np.sort(first["_pos_min"].to_numpy()))
