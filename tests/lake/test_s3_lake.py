"""The lake on a real S3-compatible server: the same commits, reads, queries and exactly-once guarantees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from distributed import Client

import nightjar.lake
from nightjar import paths
from nightjar.lake import commit, maintain, read, tables
from nightjar.pipelines import lake_write, stages
from nightjar.settings import Settings
from nightjar.sql import export
from nightjar.sql.engine import query_lake
from nightjar.storage import LakeRoot
from nightjar.streams import simulate
from nightjar.streams.decode import RawBatch, decode_batch

TOPIC = "sim"
ALERTS = 120


def _batches(alerts: int, batches: int) -> list[tuple[stages.DecodedBatch, dict[str, int]]]:
    """Decoded batches of simulated alerts (no history before the first night: one sources row per alert)."""
    config = simulate.SimConfig(history_days=0)
    payloads = [a.payload for a in simulate.generate_alerts(alerts, seed=11, config=config)]
    size = -(-alerts // batches)
    out = []
    for start in range(0, alerts, size):
        chunk = payloads[start : start + size]
        raw = RawBatch(chunk, [TOPIC] * len(chunk), [0] * len(chunk), list(range(start, start + len(chunk))))
        decoded = stages.locate(decode_batch(raw), partition_order=5)
        out.append((decoded, {commit.app_id(TOPIC, 0): start + len(chunk) - 1}))
    return out


@pytest.fixture
def s3_filled(s3_lake: LakeRoot) -> LakeRoot:
    """An S3 lake holding ``ALERTS`` simulated alerts, committed in three batches."""
    for batch, txns in _batches(ALERTS, 3):
        lake_write.commit_to_lake(batch, s3_lake, txns)
    return s3_lake


def test_batches_commit_to_s3_exactly_once(s3_lake: LakeRoot) -> None:
    batches = _batches(ALERTS, 3)
    for batch, txns in batches:
        lake_write.commit_to_lake(batch, s3_lake, txns)
    versions = read.table_versions(s3_lake)
    # A batch read again after a crash (before the Kafka offsets were committed) adds nothing.
    lake_write.commit_to_lake(batches[1][0], s3_lake, batches[1][1])
    assert read.table_versions(s3_lake) == versions
    lake = nightjar.lake.open(s3_lake)
    assert lake.to_arrow(paths.SOURCES).num_rows == ALERTS
    assert lake.to_arrow(paths.CUTOUTS).num_rows == ALERTS
    objects = {i for i in lake.to_arrow(paths.SOURCES)["diaObjectId"].to_pylist() if i is not None}  # no SSO
    assert sorted(lake.to_arrow(paths.OBJECTS)["diaObjectId"].to_pylist()) == sorted(objects)
    # Nothing was written to the local disk in the lake's name.
    assert not Path("s3:").exists()
    assert tables.load(s3_lake, paths.SOURCES).transaction_version(commit.app_id(TOPIC, 0)) == ALERTS - 1


def test_reading_an_s3_lake_as_pyarrow_dask_and_duckdb(s3_filled: LakeRoot, dask_client: Client) -> None:
    lake = nightjar.lake.open(s3_filled)
    sources = lake.to_arrow(paths.SOURCES, columns=["diaSourceId", "band"])
    assert sources.num_rows == ALERTS
    frame = lake.to_dask(paths.SOURCES, columns=["diaSourceId"], partition_bytes=1)
    assert len(dask_client.compute(frame).result()) == ALERTS  # the workers read S3 with the lake's options
    con = lake.duckdb()
    assert con.sql("SELECT count(*) FROM sources").fetchall() == [(ALERTS,)]
    # Time travel: the lake as it was after its first batch.
    first = nightjar.lake.open(s3_filled, versions={paths.SOURCES: 0})
    assert 0 < first.to_arrow(paths.SOURCES).num_rows < ALERTS


def test_sql_queries_and_exports_read_the_s3_lake(s3_filled: LakeRoot, home: Path, tmp_path: Path) -> None:
    settings = Settings(
        home=home, lake_uri=s3_filled.uri, storage_options=dict(s3_filled.options), query_isolation=False
    )
    assert settings.lake == s3_filled
    result = query_lake(settings, "SELECT count(*) AS n FROM sources")
    assert result["n"].to_pylist() == [ALERTS]
    night = int(nightjar.lake.open(s3_filled).to_arrow(paths.SOURCES, ["night"])["night"][0].as_py())
    manifest = export.export(settings, paths.SOURCES, export.Selection(night=night), tmp_path / "out")
    assert manifest["rows"] > 0
    # Maintenance works there too: compaction keeps every row.
    maintain.optimize(s3_filled)
    assert nightjar.lake.open(s3_filled).to_arrow(paths.SOURCES).num_rows == ALERTS


def test_two_writers_at_one_version_both_land(s3_lake: LakeRoot) -> None:
    """Two writers that read the same table version (two drivers): S3 conditional puts make the second commit
    retry on top of the first instead of overwriting its commit file, so neither batch is lost."""
    uri, options = s3_lake.table_uri("t"), s3_lake.storage_options
    write_deltalake(uri, pa.table({"x": [0]}), storage_options=options)
    first, second = DeltaTable(uri, storage_options=options), DeltaTable(uri, storage_options=options)
    write_deltalake(first, pa.table({"x": [1]}), mode="append")
    # Without retries the stale writer's commit is refused (the commit file exists), never overwritten...
    with pytest.raises(CommitFailedError):
        write_deltalake(
            second, pa.table({"x": [2]}), mode="append", commit_properties=CommitProperties(max_commit_retries=0)
        )
    # ... and with them it lands as the next version.
    write_deltalake(second, pa.table({"x": [2]}), mode="append")
    final = DeltaTable(uri, storage_options=options)
    assert final.version() == 2
    assert sorted(final.to_pyarrow_table()["x"].to_pylist()) == [0, 1, 2]


def test_the_api_serving_snapshot_reads_the_s3_lake(s3_filled: LakeRoot) -> None:
    """What ``nightjar serve`` reads (``lake.serving``): object lookups, cone searches and cutouts, from S3."""
    from nightjar.lake.serving import LakeReader

    snapshot = LakeReader(s3_filled).snapshot()
    sources = nightjar.lake.open(s3_filled).to_arrow(paths.SOURCES, ["diaSourceId", "diaObjectId", "ra", "dec"])
    row = sources.filter(pc.is_valid(sources["diaObjectId"])).slice(0, 1).to_pylist()[0]
    index = snapshot.object_index()
    assert index is not None
    found = index.read(np.array([row["diaObjectId"]], np.int64), ["diaObjectId"])
    assert found["diaObjectId"].to_pylist() == [row["diaObjectId"]]
    near = snapshot.cone(row["ra"], row["dec"], 5.0, ["diaObjectId"])
    assert row["diaObjectId"] in near["diaObjectId"].to_pylist()
    cutouts = snapshot.cutouts(row["diaSourceId"])
    assert cutouts is not None and all(cutouts.values())


def test_a_batch_committed_by_two_drivers_at_once_is_stored_once(s3_lake: LakeRoot) -> None:
    """Two drivers committing the same Kafka offsets at once (a partition handed over mid-batch): delta-rs refuses
    the second commit of the same application transaction, and ``commit.append`` then finds it committed."""
    txns = {commit.app_id(TOPIC, 0): 9}
    rows = pa.table({"diaObjectId": pa.array(range(10), pa.int64()), "annotationId": pa.array(range(10), pa.int64())})
    commit.append(s3_lake, paths.ANNOTATIONS, rows.slice(0, 0), {})  # the table exists
    first, second = tables.load(s3_lake, paths.ANNOTATIONS), tables.load(s3_lake, paths.ANNOTATIONS)
    write_deltalake(first, rows, mode="append", commit_properties=commit._properties(txns, first))
    with pytest.raises(CommitFailedError, match=r"(?i)concurrent transaction"):
        write_deltalake(second, rows, mode="append", commit_properties=commit._properties(txns, second))
    assert not commit.append(s3_lake, paths.ANNOTATIONS, rows, txns)
    assert nightjar.lake.open(s3_lake).to_arrow(paths.ANNOTATIONS).num_rows == 10


def test_storage_options_from_the_aws_environment(s3_lake: LakeRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    """No NIGHTJAR_STORAGE_OPTIONS: delta-rs and Arrow's S3 client both take the AWS_* environment variables."""
    for key, value in s3_lake.options.items():
        monkeypatch.setenv(key, value)
    bare = Settings(lake_uri=s3_lake.uri).lake
    assert bare.storage_options is None
    batch, txns = _batches(20, 1)[0]
    lake_write.commit_to_lake(batch, bare, txns)
    assert nightjar.lake.open(bare).to_arrow(paths.SOURCES).num_rows == 20
