from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit


def sources(ids: list[int], night: int = 60950) -> pa.Table:
    return pa.table(
        {
            "diaSourceId": pa.array(ids, pa.int64()),
            "hpx29": pa.array([10**15 - i for i in ids], pa.int64()),
            "night": pa.array([night] * len(ids), pa.int32()),
        }
    )


def test_append_is_idempotent_per_offset_range(home: Path) -> None:
    txns = {commit.app_id("alerts", 0): 99}
    assert commit.append(home, paths.SOURCES, sources([1, 2, 3]), txns)
    # The same offsets again (a re-delivered batch) write nothing.
    assert not commit.append(home, paths.SOURCES, sources([1, 2, 3]), txns)
    assert commit.append(home, paths.SOURCES, sources([4]), {commit.app_id("alerts", 0): 100})
    dt = DeltaTable(str(paths.table_dir(home, paths.SOURCES)))
    assert sorted(dt.to_pyarrow_table()["diaSourceId"].to_pylist()) == [1, 2, 3, 4]
    assert dt.transaction_version(commit.app_id("alerts", 0)) == 100


def test_appended_files_are_sorted_by_hpx29(home: Path) -> None:
    commit.append(home, paths.SOURCES, sources([1, 2, 3, 4]), {"x": 1})
    table = DeltaTable(str(paths.table_dir(home, paths.SOURCES))).to_pyarrow_table()
    values = table["hpx29"].to_pylist()
    assert values == sorted(values)


def test_upsert_keeps_the_latest_state_per_object(home: Path) -> None:
    def objects(rows: list[tuple[int, float, int]]) -> pa.Table:
        return pa.table(
            {
                "diaObjectId": pa.array([r[0] for r in rows], pa.int64()),
                "lastAlertMjdTai": pa.array([r[1] for r in rows], pa.float64()),
                "nDiaSources": pa.array([r[2] for r in rows], pa.int32()),
            }
        )

    # Two alerts of object 7 in one batch: the later one wins.
    commit.upsert(home, paths.OBJECTS, objects([(7, 1.0, 1), (7, 2.0, 2), (8, 1.5, 1)]), {"a": 1}, "lastAlertMjdTai")
    # An older state arriving later does not overwrite a newer one.
    commit.upsert(home, paths.OBJECTS, objects([(7, 1.5, 9), (9, 3.0, 1)]), {"a": 2}, "lastAlertMjdTai")
    assert not commit.upsert(home, paths.OBJECTS, objects([(7, 9.0, 99)]), {"a": 2}, "lastAlertMjdTai")
    table = DeltaTable(str(paths.table_dir(home, paths.OBJECTS))).to_pyarrow_table().sort_by("diaObjectId")
    assert table["diaObjectId"].to_pylist() == [7, 8, 9]
    assert table["nDiaSources"].to_pylist() == [2, 1, 1]


def test_a_batch_straddling_committed_offsets_writes_only_the_new_rows(home: Path) -> None:
    """After a crash the consumer may cut the same messages into different batches: per-row offsets decide."""

    def batch(p0: range, p1: range) -> pa.Table:
        parts = [0] * len(p0) + [1] * len(p1)
        offsets = [*p0, *p1]
        return (
            sources([1000 * p + o for p, o in zip(parts, offsets, strict=True)])
            .append_column(paths.KAFKA_TOPIC, pa.array(["alerts"] * len(parts)))
            .append_column(paths.KAFKA_PARTITION, pa.array(parts, pa.int32()))
            .append_column(paths.KAFKA_OFFSET, pa.array(offsets, pa.int64()))
        )

    first = {commit.app_id("alerts", 0): 9, commit.app_id("alerts", 1): 4}
    assert commit.append(home, paths.SOURCES, batch(range(0, 10), range(0, 5)), first)
    again = {commit.app_id("alerts", 0): 14, commit.app_id("alerts", 1): 7}
    assert commit.append(home, paths.SOURCES, batch(range(5, 15), range(3, 8)), again)
    ids = DeltaTable(str(paths.table_dir(home, paths.SOURCES))).to_pyarrow_table()["diaSourceId"].to_pylist()
    assert sorted(ids) == sorted([*range(0, 15), *(1000 + o for o in range(0, 8))])
