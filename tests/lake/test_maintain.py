from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from nightjar import paths
from nightjar.cli import main
from nightjar.lake import commit, maintain, read

from .comparable import by_key


def delta(home: Path, table: str) -> DeltaTable:
    return DeltaTable(str(paths.table_dir(home, table)))


def contents(home: Path, table: str) -> pa.Table:
    """The whole table, read by deltalake itself, in key order, NaN as null (so equal tables compare equal); for
    ``objects`` (merge-on-read) each object's newest state, as every reader sees it."""
    dt = delta(home, table)
    data = read.table_dataset(dt, table).to_table() if table == paths.OBJECTS else dt.to_pyarrow_table()
    return by_key(data, table)


def parquet_on_disk(home: Path, table: str) -> set[str]:
    return {str(p) for p in paths.table_dir(home, table).rglob("*.parquet")}


def partition_count(dt: DeltaTable, data: pa.Table) -> int:
    columns = dt.metadata().partition_columns
    return len(data.select(columns).group_by(columns).aggregate([])) if columns else 1


def stats_columns(dt: DeltaTable) -> list[str]:
    """The columns Delta keeps file statistics for: the configured list, else the first 32 data columns."""
    configured = dt.metadata().configuration.get("delta.dataSkippingStatsColumns")
    if configured:
        return configured.split(",")
    names = [f.name for f in pa.schema(dt.schema().to_arrow())]
    return [n for n in names if n not in dt.metadata().partition_columns][:32]


def test_tables_match_an_independent_count(
    lake_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    infos = {i.table: i for i in maintain.tables(lake_home)}
    # the real LSSTCam alerts of minor planets add the solar-system tables
    assert set(infos) == {*paths.ALERT_TABLES, paths.SS_SOURCES, paths.SS_OBJECTS}
    for table, info in infos.items():
        dt = delta(lake_home, table)
        data = dt.to_pyarrow_table()
        uris = dt.file_uris()
        assert info.version == dt.version()
        assert info.rows == data.num_rows
        assert info.files == len(uris)
        assert info.bytes == sum(os.path.getsize(u) for u in uris)
        assert info.partitions == partition_count(dt, data)
        has_hpx29 = "hpx29" in data.column_names
        assert info.hpx29_stats == (("hpx29" in stats_columns(dt)) if has_hpx29 else None)
    triggers = delta(lake_home, paths.SOURCES).to_pyarrow_table(columns=["fromPacketHistory"])
    assert pc.sum(pc.invert(triggers["fromPacketHistory"])).as_py() == 230

    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    assert main(["lake", "tables", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["table"]: (r["rows"], r["files"], r["bytes"], r["version"]) for r in rows} == {
        t: (i.rows, i.files, i.bytes, i.version) for t, i in infos.items()
    }


def test_history_lists_every_version(
    lake_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    latest = delta(lake_home, paths.SOURCES).version()
    entries = maintain.history(lake_home, paths.SOURCES)
    assert [e.version for e in entries] == list(range(latest, -1, -1))
    assert {e.operation for e in entries} == {"WRITE"}
    assert (
        sum(e.metrics["num_added_rows"] for e in entries) == delta(lake_home, paths.SOURCES).to_pyarrow_table().num_rows
    )
    assert [e.version for e in maintain.history(lake_home, paths.SOURCES, limit=2)] == [latest, latest - 1]

    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    assert main(["lake", "history", paths.OBJECTS, "--format", "json"]) == 0
    versions = [json.loads(line)["version"] for line in capsys.readouterr().out.splitlines()]
    assert versions == list(range(delta(lake_home, paths.OBJECTS).version(), -1, -1))
    assert main(["lake", "history", "nosuchtable"]) == 2
    assert "unknown table 'nosuchtable'" in capsys.readouterr().err


def test_optimize_keeps_contents_with_fewer_files_sorted_by_hpx29(lake_home: Path) -> None:
    before = {t: contents(lake_home, t) for t in paths.ALERT_TABLES}
    files_before = {t: len(delta(lake_home, t).file_uris()) for t in paths.ALERT_TABLES}

    reports = {r.table: r for r in maintain.optimize(lake_home)}

    for table in paths.ALERT_TABLES:
        assert contents(lake_home, table).equals(before[table])
        uris = delta(lake_home, table).file_uris()
        assert len(uris) < files_before[table]
        assert reports[table].files_after == len(uris) and reports[table].files_before == files_before[table]
        order = paths.SORT_COLUMNS[table]
        for uri in uris:  # every file stays sorted (hpx29, or diaSourceId for cutouts): readers prune by range
            values = pc.drop_null(pq.read_table(uri, columns=[order])[order]).to_numpy()  # no position: last
            assert (np.diff(values) >= 0).all(), (table, order)
    # One file per partition: the test lake is far below the target file size.
    dt = delta(lake_home, paths.SOURCES)
    assert len(dt.file_uris()) == partition_count(dt, dt.to_pyarrow_table())
    assert delta(lake_home, paths.SOURCES).history(1)[0]["operation"] == "OPTIMIZE"
    # A new lake version points readers of the latest lake at the compacted files.
    snapshot = read.snapshot(lake_home)
    assert all(snapshot[t] == delta(lake_home, t).version() for t in paths.ALERT_TABLES)
    # A second pass finds nothing to do and commits nothing.
    again = maintain.optimize(lake_home)
    assert all(r.commits == 0 and r.version_after == r.version_before for r in again)


def test_hpx29_statistics_let_cone_searches_skip_files(lake_home: Path) -> None:
    dt = delta(lake_home, paths.SOURCES)
    # The LSSTCam pointing (one field, night 60924): an order-8 pixel (~0.05 deg2) around its first alert.
    lsst = dt.to_pyarrow_table(filters=[("night", "=", 60924)])
    shift = 2 * (29 - 8)
    pixel = lsst[paths.HPX29][0].as_py() >> shift
    cone = [(paths.HPX29, ">=", pixel << shift), (paths.HPX29, "<", (pixel + 1) << shift)]
    expected = dt.to_pyarrow_table(filters=cone).sort_by("diaSourceId")
    assert expected.num_rows >= 1
    if "hpx29" not in stats_columns(dt):  # no statistics in the log: a range on hpx29 keeps every file
        assert len(dt.file_uris(file_pruning_predicate=cone)) == len(dt.file_uris())
        assert maintain.enable_hpx29_stats(lake_home, paths.SOURCES)
    assert not maintain.enable_hpx29_stats(lake_home, paths.SOURCES)
    maintain.optimize(lake_home, paths.SOURCES)

    dt = delta(lake_home, paths.SOURCES)
    assert maintain.table_info(lake_home, paths.SOURCES).hpx29_stats is True
    touched = dt.file_uris(file_pruning_predicate=cone)
    assert 1 <= len(touched) < len(dt.file_uris())
    assert dt.to_pyarrow_table(filters=cone).sort_by("diaSourceId").equals(expected)
    # Every file now carries its range in the log: the next pass has nothing to rewrite.
    assert maintain.optimize(lake_home, paths.SOURCES)[0].commits == 0


def test_optimize_retries_after_a_merge_and_ignores_blind_appends(lake_home: Path) -> None:
    # Snapshots taken before other writers commit: the optimize below plans on stale tables.
    stale = {t: delta(lake_home, t) for t in paths.ALERT_TABLES}
    newer = contents(lake_home, paths.OBJECTS).slice(0, 3)
    newer = newer.set_column(
        newer.schema.get_field_index("lastAlertMjdTai"), "lastAlertMjdTai", pa.array([70000.0] * 3)
    )
    with commit.lake_lock(lake_home):  # a batch's objects: their new states appended (merge-on-read)
        assert commit.append_states(lake_home, paths.OBJECTS, newer, {"test:0": 1}) is not None
    extra = contents(lake_home, paths.SOURCES).slice(0, 2)
    extra = extra.set_column(extra.schema.get_field_index("diaSourceId"), "diaSourceId", pa.array([-1, -2], pa.int64()))
    assert commit.append(lake_home, paths.SOURCES, extra, {"test:0": 1})
    expected = {t: contents(lake_home, t) for t in paths.ALERT_TABLES}

    # Objects are appended too: the stale fold replaces exactly the states it read and keeps the newer ones.
    objects = maintain._optimize_table(lake_home, paths.OBJECTS, None, 3, snapshot=stale[paths.OBJECTS], fold_all=True)
    assert objects.conflicts == 0 and objects.commits == 1
    # A blind append only adds files: the stale rewrite commits on top of it without conflict.
    sources = maintain._optimize_table(lake_home, paths.SOURCES, None, 3, snapshot=stale[paths.SOURCES])
    assert sources.conflicts == 0 and sources.commits == 1
    for table in paths.ALERT_TABLES:
        assert contents(lake_home, table).equals(expected[table])
    assert contents(lake_home, paths.OBJECTS).filter(pc.field("lastAlertMjdTai") == 70000.0).num_rows == 3


def test_vacuum_removes_unreferenced_files(
    lake_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    maintain.optimize(lake_home)
    before = {t: contents(lake_home, t) for t in paths.ALERT_TABLES}
    referenced = {t: set(delta(lake_home, t).file_uris()) for t in paths.ALERT_TABLES}
    for table in paths.ALERT_TABLES:
        assert parquet_on_disk(lake_home, table) > referenced[table]

    # The default retention (7 days) keeps the files just removed, for time travel.
    assert all(not r.files for r in maintain.vacuum(lake_home))
    dry = {r.table: r for r in maintain.vacuum(lake_home, retention_hours=0, dry_run=True)}
    for table in paths.ALERT_TABLES:
        stale = parquet_on_disk(lake_home, table) - referenced[table]
        assert {str(paths.table_dir(lake_home, table) / f) for f in dry[table].files} == stale
        assert dry[table].bytes == sum(os.path.getsize(f) for f in stale)

    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    assert main(["lake", "vacuum", "--retention-hours", "0"]) == 0
    assert "deleted" in capsys.readouterr().err
    for table in paths.ALERT_TABLES:
        assert parquet_on_disk(lake_home, table) == referenced[table]
        assert contents(lake_home, table).equals(before[table])


def test_maintenance_commands_report_bad_input(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(home))
    assert main(["lake", "tables"]) == 0
    assert "no lake tables" in capsys.readouterr().err
    assert main(["lake", "optimize", "sources"]) == 2
    assert "has no data yet" in capsys.readouterr().err
    assert main(["lake", "vacuum", "nosuchtable"]) == 2
    assert "unknown table" in capsys.readouterr().err


def _sources(batch: int, rows: int = 40) -> pa.Table:
    ids = np.arange(batch * rows, (batch + 1) * rows, dtype=np.int64)
    rng = np.random.default_rng(batch)
    table = pa.table(
        {
            "diaSourceId": ids,
            "diaObjectId": ids % 50,
            "hpx29": rng.integers(0, 12 << 58, rows, dtype=np.int64),
            "night": (60900 + ids % 2).astype(np.int32),
            "psfFlux": rng.normal(1000.0, 50.0, rows),
        }
    )
    return with_hpx_part(table)


def _objects(sources: pa.Table, batch: int) -> pa.Table:
    ids = np.unique(sources["diaObjectId"].to_numpy())
    table = pa.table(
        {
            "diaObjectId": ids,
            "hpx29": ids << 50,
            "lastAlertMjdTai": np.full(len(ids), 60900.0 + batch),
            "nDiaSources": np.full(len(ids), batch, dtype=np.int64),
        }
    )
    return with_hpx_part(table)


def with_hpx_part(table: pa.Table, order: int = 5) -> pa.Table:
    """The coarse HEALPix column the pipeline adds (and the lake may partition by)."""
    parent = table["hpx29"].to_numpy() >> (2 * (29 - order))
    return table.append_column("hpx_part", pa.array(parent, pa.int64()))


def test_optimize_while_ingesting_loses_and_duplicates_nothing(home: Path) -> None:
    batches = 24
    commit.append(home, paths.SOURCES, _sources(0), {"test:0": 0})
    with commit.lake_lock(home):
        commit.append_states(home, paths.OBJECTS, _objects(_sources(0), 0), {"test:0": 0})
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def ingest() -> None:  # what the pipeline's lake stage does per micro-batch
        try:
            for b in range(1, batches):
                data = _sources(b)
                commit.append(home, paths.SOURCES, data, {"test:0": b})
                with commit.lake_lock(home):  # objects: states appended under the lock, as the pipeline does
                    commit.append_states(home, paths.OBJECTS, _objects(data, b), {"test:0": b})
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.clear()

    passes = []
    writer = threading.Thread(target=ingest)
    writer.start()
    while writing.is_set():
        passes.extend(maintain.optimize(home))
        time.sleep(0.05)
    writer.join()
    assert not errors, errors
    assert sum(r.commits for r in passes) >= 2

    sources = delta(home, paths.SOURCES).to_pyarrow_table()
    assert sources.num_rows == batches * 40
    assert sorted(sources["diaSourceId"].to_pylist()) == list(range(batches * 40))
    latest = {}  # each object's last batch, computed from the inputs
    for b in range(batches):
        latest.update(dict.fromkeys(_sources(b)["diaObjectId"].to_pylist(), b))
    objects = contents(home, paths.OBJECTS)
    assert objects["diaObjectId"].to_pylist() == sorted(latest)
    assert objects["nDiaSources"].to_pylist() == [latest[k] for k in sorted(latest)]
    # Optimize commits landed between ingestion commits, not only after them.
    history = delta(home, paths.SOURCES).history()
    optimized = [h["version"] for h in history if h["operation"] == "OPTIMIZE"]
    written = [h["version"] for h in history if h["operation"] == "WRITE"]
    assert optimized and min(optimized) < max(written)


def test_optimize_rewrites_only_the_partitions_that_need_it(home: Path) -> None:
    """Two partition columns (night and a coarse sky pixel): one commit per night, only untidy partitions."""
    location = str(paths.table_dir(home, paths.SOURCES))  # the lead's layout: by night and coarse pixel
    rng = np.random.default_rng(3)
    for b in range(4):
        n = 200
        data = pa.table(
            {
                "id": np.arange(b * n, (b + 1) * n, dtype=np.int64),
                "hpx29": np.sort(rng.integers(0, 4 << 58, n, dtype=np.int64)),
                "night": np.full(n, 60900 + (b % 2), dtype=np.int32),  # batches 0, 2 -> night 60900; 1, 3 -> 60901
            }
        )
        data = data.append_column("hpx_part", pa.array(data["hpx29"].to_numpy() >> 58))  # order 0: 4 pixels used
        if b == 3:
            data = data.filter(pc.field("hpx_part") == 0)  # night 60901 gets a second file in pixel 0 only
        write_deltalake(location, data, mode="append", partition_by=["night", "hpx_part"])
    before = DeltaTable(location).to_pyarrow_table().sort_by("id")
    dt = DeltaTable(location)
    dirty = maintain._dirty_partitions(dt, maintain.DEFAULT_TARGET_SIZE)
    assert sorted((d["night"], d["hpx_part"]) for d in dirty) == [(60900, p) for p in range(4)] + [(60901, 0)]
    assert sorted(maintain._batches(["night", "hpx_part"], dirty)) == [
        [("night", "=", "60900"), ("hpx_part", "in", ["0", "1", "2", "3"])],
        [("night", "=", "60901"), ("hpx_part", "in", ["0"])],
    ]
    report = maintain._optimize_table(home, paths.SOURCES, None, 3, snapshot=dt)
    assert report.commits == 2 and report.partitions_rewritten == 5
    after = DeltaTable(location)
    assert after.to_pyarrow_table().sort_by("id").equals(before)
    assert len(after.file_uris()) == 8  # one file per (night, pixel)
