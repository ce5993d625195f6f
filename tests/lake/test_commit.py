from __future__ import annotations

import io
from pathlib import Path

import fastavro
import pyarrow as pa
import pytest
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


def test_an_upsert_of_many_keys_replaces_each_once_and_records_the_batch_last(home: Path) -> None:
    # 45,000 keys in one replaceWhere crashed delta-rs (stack overflow); they are replaced in pieces.
    def objects(ids: range, state: float) -> pa.Table:
        return pa.table(
            {
                "diaObjectId": pa.array(ids, pa.int64()),
                "lastAlertMjdTai": pa.array([state] * len(ids), pa.float64()),
            }
        )

    commit.upsert(home, paths.OBJECTS, objects(range(0, 50_000), 1.0), {"a": 1}, "lastAlertMjdTai")
    many = objects(range(5_000, 55_000), 2.0)  # 45,000 stored keys to replace, 5,000 new ones
    assert 8 * commit.REPLACE_KEYS_MAX < 45_000
    assert commit.upsert(home, paths.OBJECTS, many, {"a": 2}, "lastAlertMjdTai")
    dt = DeltaTable(str(paths.table_dir(home, paths.OBJECTS)))
    table = dt.to_pyarrow_table().sort_by("diaObjectId")
    assert table["diaObjectId"].to_pylist() == list(range(0, 55_000))
    assert table["lastAlertMjdTai"].to_pylist() == [1.0] * 5_000 + [2.0] * 50_000
    assert dt.transaction_version("a") == 2
    # After the table's creation: one append of the new keys, then one commit per piece of 5,000 stored keys;
    # only the last carries the batch's transaction.
    assert dt.version() == 10
    dt.load_as_version(9)
    assert dt.transaction_version("a") == 1
    assert not commit.upsert(home, paths.OBJECTS, many, {"a": 2}, "lastAlertMjdTai")


def _states(ids: list[int], state: float) -> pa.Table:
    return pa.table({"diaObjectId": pa.array(ids, pa.int64()), "lastAlertMjdTai": pa.array([state] * len(ids))})


def test_an_upsert_of_new_keys_only_appends(home: Path) -> None:
    commit.upsert(home, paths.OBJECTS, _states([1, 2, 3], 1.0), {"a": 1}, "lastAlertMjdTai")
    before = set(DeltaTable(str(paths.table_dir(home, paths.OBJECTS))).file_uris())
    assert commit.upsert(home, paths.OBJECTS, _states([4, 5], 1.0), {"a": 2}, "lastAlertMjdTai")
    dt = DeltaTable(str(paths.table_dir(home, paths.OBJECTS)))
    assert before < set(dt.file_uris())  # no stored file rewritten
    assert dt.history(1)[0]["operationParameters"]["mode"] == "Append"
    assert sorted(dt.to_pyarrow_table()["diaObjectId"].to_pylist()) == [1, 2, 3, 4, 5]
    assert dt.transaction_version("a") == 2


def test_an_upsert_cut_short_after_appending_its_new_keys_is_rerun_exactly(home: Path, monkeypatch) -> None:
    commit.upsert(home, paths.OBJECTS, _states([1, 2], 1.0), {"a": 1}, "lastAlertMjdTai")
    batch = _states([2, 3], 2.0)  # replaces 2, adds 3

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between the append and the replace")

    with monkeypatch.context() as patched:
        patched.setattr(commit, "_replace_keys", crash)
        with pytest.raises(RuntimeError, match="killed"):
            commit.upsert(home, paths.OBJECTS, batch, {"a": 2}, "lastAlertMjdTai")
    dt = DeltaTable(str(paths.table_dir(home, paths.OBJECTS)))
    assert dt.transaction_version("a") == 1  # the batch is not committed yet
    assert commit.upsert(home, paths.OBJECTS, batch, {"a": 2}, "lastAlertMjdTai")
    dt = DeltaTable(str(paths.table_dir(home, paths.OBJECTS)))
    table = dt.to_pyarrow_table().sort_by("diaObjectId")
    assert table["diaObjectId"].to_pylist() == [1, 2, 3]
    assert table["lastAlertMjdTai"].to_pylist() == [1.0, 2.0, 2.0]
    assert dt.transaction_version("a") == 2


def test_time_travel_reads_one_consistent_past_lake(settings, dask_client, data_dir) -> None:
    import time
    from datetime import UTC, datetime

    from nightjar.lake import read
    from nightjar.pipelines.run import ingest
    from nightjar.sql.engine import query_lake
    from nightjar.sql.sandbox import QueryError

    files = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))
    ingest(settings, dask_client, files[:40])
    version = read.lake_version(settings.home)
    time.sleep(1.1)
    between = datetime.now(UTC)
    time.sleep(1.1)
    ingest(settings, dask_client, files[40:])
    sql = "SELECT (SELECT count(*) FROM cutouts) AS cutouts, (SELECT count(*) FROM objects) AS objects"
    now = query_lake(settings, sql).to_pylist()[0]
    assert now["cutouts"] == 100
    first_objects = set()
    for path in files[:40]:
        for record in fastavro.reader(io.BytesIO(path.read_bytes())):
            assert isinstance(record, dict)
            if record["diaObject"] is not None:
                first_objects.add(record["diaObject"]["diaObjectId"])
    for as_of in (version, between):
        past = query_lake(settings, sql, as_of=as_of).to_pylist()[0]
        assert past == {"cutouts": 40, "objects": len(first_objects)}
    with pytest.raises(QueryError, match="no version"):
        query_lake(settings, sql, as_of=10_000)


def test_concurrent_batch_commits_on_dask_workers_lose_nothing(settings, dask_client) -> None:
    from nightjar.pipelines import lake_write, stages
    from nightjar.pipelines.graph import transactions
    from nightjar.sql.engine import query_lake
    from nightjar.streams.decode import RawBatch
    from nightjar.streams.simulate import generate_alerts

    alerts = list(generate_alerts(600, seed=13))
    batches = []
    for i in range(0, 600, 100):
        part = alerts[i : i + 100]
        raw = RawBatch([a.payload for a in part], ["concurrent"] * 100, [i // 100] * 100, list(range(100)))
        batches.append((stages.locate(stages.decode(raw, 4_000_000), 5), transactions(raw)))
    # Six batches, each its own Kafka partition, committed at the same time by two worker processes.
    futures = [dask_client.submit(lake_write.commit_to_lake, b, settings.home, t, pure=False) for b, t in batches]
    dask_client.gather(futures)
    # Committed out of order, an alert's detection may first reach the lake in a later alert's packet history
    # (fromPacketHistory then says so): every alert's detection is there, once.
    stored = query_lake(settings, "SELECT diaSourceId FROM sources")["diaSourceId"].to_pylist()
    assert len(stored) == len(set(stored))
    assert {a.dia_source_id for a in alerts} <= set(stored)
    keys = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT diaObjectId) AS d FROM objects")
    expected_objects = {a.dia_object_id for a in alerts if a.dia_object_id is not None}
    assert keys["n"][0].as_py() == keys["d"][0].as_py() == len(expected_objects)
    assert query_lake(settings, "SELECT count(*) AS n FROM cutouts")["n"][0].as_py() == 600
    # Every object holds the state of its latest alert, whatever order the commits landed in.
    latest = query_lake(settings, "SELECT diaObjectId, lastDiaSourceId FROM objects").to_pylist()
    last_alert = {}
    for a in alerts:
        if a.dia_object_id is not None:
            last_alert[a.dia_object_id] = a.dia_source_id
    assert {r["diaObjectId"]: r["lastDiaSourceId"] for r in latest} == last_alert


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
    # Read again after a rebalance: partition 0's older messages beside partition 1's newer ones. The table must
    # not record partition 0 back at 12, or the next batch would write 13 and 14 a second time.
    mixed = {commit.app_id("alerts", 0): 12, commit.app_id("alerts", 1): 9}
    assert commit.append(home, paths.SOURCES, batch(range(10, 13), range(6, 10)), mixed)
    assert DeltaTable(str(paths.table_dir(home, paths.SOURCES))).transaction_version(commit.app_id("alerts", 0)) == 14
    later = {commit.app_id("alerts", 0): 16, commit.app_id("alerts", 1): 10}
    assert commit.append(home, paths.SOURCES, batch(range(13, 17), range(10, 11)), later)
    ids = DeltaTable(str(paths.table_dir(home, paths.SOURCES))).to_pyarrow_table()["diaSourceId"].to_pylist()
    assert sorted(ids) == sorted([*range(0, 17), *(1000 + o for o in range(0, 11))])
