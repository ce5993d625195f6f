"""Upserted tables stay filterable: string columns are written as ``string``, never ``string_view``.

pyarrow has no comparison kernels for ``string_view`` yet, and DuckDB pushes string filters into pyarrow scans,
so a single merged file with view types breaks every filtered query on its table (deltalake 1.6 writes them).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake


def test_an_upserted_table_answers_string_filters(settings: Settings) -> None:
    home = settings.home
    first = pa.table(
        {
            "diaObjectId": pa.array([1, 2], pa.int64()),
            "survey": ["ztf", "ztf"],
            "lastAlertMjdTai": [60000.0, 60000.0],
        }
    )
    second = pa.table(
        {
            "diaObjectId": pa.array([2, 3], pa.int64()),
            "survey": ["lsst", "lsst"],
            "lastAlertMjdTai": [60001.0, 60001.0],
        }
    )
    with commit.lake_lock(home):
        commit.upsert(home, paths.OBJECTS, first, {"t:0": 0}, order="lastAlertMjdTai")
        commit.upsert(home, paths.OBJECTS, second, {"t:0": 1}, order="lastAlertMjdTai")
        commit.log_batch(home, {"t:0": 1})
    dt = DeltaTable(str(paths.table_dir(home, paths.OBJECTS)))
    assert {str(pq.read_schema(f).field("survey").type) for f in dt.file_uris()} == {"string"}
    rows = query_lake(settings, "SELECT diaObjectId FROM objects WHERE survey IN ('lsst') ORDER BY 1")
    assert rows["diaObjectId"].to_pylist() == [2, 3]
