from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from distributed import Client

import nightjar.lake
from nightjar import paths
from nightjar.lake import LakeError, commit

from .comparable import by_key

REPO = Path(__file__).resolve().parents[2]


def delta(home: Path, table: str, version: int | None = None) -> DeltaTable:
    return DeltaTable(str(paths.table_dir(home, table)), version=version)


def computed(client: Client, frame: object) -> pa.Table:
    return pa.Table.from_pandas(client.compute(frame).result(), preserve_index=False)


def test_dask_round_trip_equals_a_pyarrow_read(lake_home: Path, dask_client: Client) -> None:
    lake = nightjar.lake.open(lake_home)
    # and the solar-system tables of the simulator's minor-planet alerts
    assert lake.tables == [*paths.ALERT_TABLES, paths.SS_SOURCES, paths.SS_OBJECTS]
    for table in paths.ALERT_TABLES:
        dt = delta(lake_home, table)
        frame = lake.to_dask(table, partition_bytes=1)  # one task per file
        assert frame.npartitions == len(dt.file_uris()) > 1
        got = computed(dask_client, frame)
        expected = dt.to_pyarrow_table()
        assert got.schema.equals(expected.schema)
        assert by_key(got, table).equals(by_key(expected, table))
        assert by_key(lake.to_arrow(table), table).equals(by_key(expected, table))
    # Default grouping: the small test lake is one task.
    assert lake.to_dask(paths.SOURCES).npartitions == 1


@pytest.mark.parametrize(
    "filters",
    [
        [("night", "in", [58849, 60924]), ("psfFlux", ">", 0.0)],  # partition and data columns
        [[("night", "=", 58349)], [("band", "=", "g"), ("night", ">", 59000)]],  # OR of ANDs
        [("hpx29", "<", 2_000_000_000_000_000_000)],  # a data column only: pruned by statistics at best
    ],
)
def test_columns_and_filters_match_an_independent_read(lake_home: Path, dask_client: Client, filters: list) -> None:
    columns = ["diaSourceId", "night", "band", "psfFlux", "hpx29"]
    expected = delta(lake_home, paths.SOURCES).to_pyarrow_table(columns=columns, filters=filters)
    assert 0 < expected.num_rows < delta(lake_home, paths.SOURCES).to_pyarrow_table(columns=["diaSourceId"]).num_rows
    lake = nightjar.lake.open(lake_home)
    got = computed(dask_client, lake.to_dask(paths.SOURCES, columns, filters, partition_bytes=1))
    assert got.column_names == columns
    assert by_key(got, paths.SOURCES).equals(by_key(expected, paths.SOURCES))
    assert by_key(lake.to_arrow(paths.SOURCES, columns, filters), paths.SOURCES).equals(by_key(expected, paths.SOURCES))


def test_partition_filters_prune_files_before_any_task(lake_home: Path) -> None:
    lake = nightjar.lake.open(lake_home)
    night = [("night", "=", 60924)]
    files = delta(lake_home, paths.SOURCES).file_uris(file_pruning_predicate=night)
    assert lake.to_dask(paths.SOURCES, filters=night, partition_bytes=1).npartitions == len(files)
    assert len(files) < len(delta(lake_home, paths.SOURCES).file_uris())
    with pytest.raises(LakeError, match="bad filter"):
        lake.to_arrow(paths.SOURCES, filters=[("night", "=", "not a night")])
    with pytest.raises(LakeError, match="unknown table"):
        lake.to_dask("nosuchtable")


def test_duckdb_views_read_the_snapshot(lake_home: Path) -> None:
    lake = nightjar.lake.open(lake_home)
    con = lake.duckdb(threads=1)
    got = con.execute("SELECT night, band, count(*) AS n FROM sources GROUP BY ALL ORDER BY ALL").fetchall()
    table = delta(lake_home, paths.SOURCES).to_pyarrow_table()
    counts = table.group_by(["night", "band"]).aggregate([([], "count_all")]).to_pydict()
    expected = sorted(zip(counts["night"], counts["band"], counts["count_all"], strict=True))
    assert got == expected
    joined = con.execute("SELECT count(*) FROM sources JOIN objects USING (diaObjectId)").fetchone()
    assert joined is not None and joined[0] > 0


def test_a_lake_is_a_pinned_snapshot(lake_home: Path) -> None:
    lake = nightjar.lake.open(lake_home)
    versions = lake.versions
    rows = lake.to_arrow(paths.SOURCES).num_rows
    extra = lake.to_arrow(paths.SOURCES).slice(0, 1)
    extra = extra.set_column(extra.schema.get_field_index("diaSourceId"), "diaSourceId", pa.array([-5], pa.int64()))
    # From another stream: rows whose Kafka offsets the table already holds would be dropped as re-deliveries.
    extra = extra.set_column(extra.schema.get_field_index("kafkaTopic"), "kafkaTopic", pa.array(["elsewhere"]))
    commit.append(lake_home, paths.SOURCES, extra, {"test:0": 1})
    assert lake.versions == versions
    assert lake.to_arrow(paths.SOURCES).num_rows == rows
    assert lake.duckdb().execute("SELECT count(*) FROM sources").fetchone() == (rows,)
    assert nightjar.lake.open(lake_home).to_arrow(paths.SOURCES).num_rows == rows + 1


def _commit_times(home: Path, table: str) -> dict[int, datetime]:
    return {h["version"]: datetime.fromtimestamp(h["timestamp"] / 1000, tz=UTC) for h in delta(home, table).history()}


def test_as_of_reads_every_table_as_it_was(lake_home: Path) -> None:
    times = {t: _commit_times(lake_home, t) for t in nightjar.lake.open(lake_home).tables}
    moment = times[paths.SOURCES][2]
    expected = {
        t: max(v for v, ts in times[t].items() if ts <= moment)
        for t in times
        if any(ts <= moment for ts in times[t].values())
    }
    assert expected[paths.SOURCES] == 2

    past = nightjar.lake.open(lake_home, as_of=moment)
    assert past.versions == expected
    for table in expected:
        old = delta(lake_home, table, expected[table]).to_pyarrow_table()
        assert by_key(past.to_arrow(table), table).equals(by_key(old, table))
    # The same moment as an ISO string, naive meaning UTC.
    naive = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert nightjar.lake.open(lake_home, as_of=naive).versions == expected

    # Just after the objects table's first commit: its version 0, and sources as far as they had got.
    first = times[paths.OBJECTS][0]
    early = nightjar.lake.open(lake_home, as_of=first)
    assert early.versions == {
        t: max(v for v, ts in times[t].items() if ts <= first)
        for t in times
        if any(ts <= first for ts in times[t].values())
    }
    assert early.versions[paths.OBJECTS] == 0

    before = min(times[paths.SOURCES].values()) - timedelta(seconds=1)
    assert nightjar.lake.open(lake_home, as_of=before).tables == []
    with pytest.raises(LakeError, match="no data in this snapshot"):
        nightjar.lake.open(lake_home, as_of=before).to_arrow(paths.SOURCES)

    pinned = nightjar.lake.open(lake_home, versions={paths.SOURCES: 1})
    assert pinned.tables == [paths.SOURCES] and pinned.versions == {paths.SOURCES: 1}
    assert pinned.to_arrow(paths.SOURCES).num_rows == delta(lake_home, paths.SOURCES, 1).to_pyarrow_table().num_rows
    with pytest.raises(LakeError, match="no version 99"):
        nightjar.lake.open(lake_home, versions={paths.SOURCES: 99})
    with pytest.raises(LakeError, match="no lake under"):
        nightjar.lake.open(lake_home / "nowhere")


def test_as_of_goes_by_commit_times_not_file_times(lake_home: Path) -> None:
    """A lake copied without its files' times (``cp -r``, a restore) still travels to the same versions."""
    times = {t: _commit_times(lake_home, t) for t in nightjar.lake.open(lake_home).tables}
    moment = times[paths.SOURCES][2]
    expected = nightjar.lake.open(lake_home, as_of=moment).versions
    assert expected[paths.SOURCES] == 2
    later = datetime.now(UTC).timestamp() + 3600
    for table in paths.ALERT_TABLES:
        for log_file in (paths.table_dir(lake_home, table) / "_delta_log").glob("*.json"):
            os.utime(log_file, (later, later))
    assert nightjar.lake.open(lake_home, as_of=moment).versions == expected
    assert nightjar.lake.open(lake_home, as_of=moment - timedelta(days=1)).tables == []


def test_the_notebook_runs_against_the_api(
    lake_home: Path, dask_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/notebook.ipynb's code cells, run in order against a real lake and the session's cluster."""
    notebook = json.loads((REPO / "docs" / "notebook.ipynb").read_text())
    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    monkeypatch.setenv("NIGHTJAR_SCHEDULER", dask_client.scheduler.address)
    namespace: dict[str, object] = {"__name__": "notebook"}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, "notebook.ipynb", "exec"), namespace)
    assert namespace["lake"].versions == nightjar.lake.open(lake_home).versions  # type: ignore[attr-defined]
