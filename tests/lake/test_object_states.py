"""The append-only ``objects`` table (merge-on-read): every reader sees each object once, in its newest state,
before and after a fold, and a fold racing a batch commit loses nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from distributed import Client
from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.lake import access, commit, fold, maintain, object_states, read, summary
from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.sql.export import Selection, export

BATCHES = 5


def _objects_table(home: Path, version: int | None = None) -> DeltaTable:
    return DeltaTable(str(paths.table_dir(home, paths.OBJECTS)), version=version)


def _detections(home: Path, as_of: int | None = None) -> dict[int, int]:
    """Detections per object in ``sources`` (the lake's light curves: one row per alert here)."""
    sources = read.datasets(home, as_of)[paths.SOURCES].to_table(columns=["diaObjectId"])
    sources = sources.filter(pc.is_valid(sources["diaObjectId"]))  # a minor planet's detections have none
    counts = sources.group_by("diaObjectId").aggregate([("diaObjectId", "count")])
    return dict(zip(counts["diaObjectId"].to_pylist(), counts["diaObjectId_count"].to_pylist(), strict=True))


def _by_id(table: pa.Table, column: str) -> dict[int, Any]:
    ids = [int(i) for i in table["diaObjectId"].to_pylist()]
    assert len(ids) == len(set(ids)), "an object appears more than once"
    return dict(zip(ids, table[column].to_pylist(), strict=True))


@pytest.fixture
def returning(settings: Settings, lake_builder: Any) -> Settings:
    """A real lake of 300 simulated alerts in 5 batches: most objects come back in later batches."""
    lake_builder(settings.home, alerts=300, batches=BATCHES)
    return settings


def _check_every_reader(settings: Settings, client: TestClient, dask_client: Client) -> dict[int, int]:
    """Every reader of ``objects`` sees each object once with its newest state: ``nSources`` (features over the
    whole stored light curve) equals the object's detections in ``sources``. Returns that expectation."""
    home = settings.home
    expected = _detections(home)
    # static SQL
    rows = engine.query_lake(settings, "SELECT diaObjectId, nSources FROM objects")
    assert _by_id(rows, "nSources") == expected
    assert engine.query_lake(settings, "SELECT count(*) AS n FROM objects")["n"].to_pylist() == [len(expected)]
    # pyarrow datasets, the pipeline's reads, the summary, notebooks (pyarrow, DuckDB, Dask)
    assert _by_id(read.datasets(home)[paths.OBJECTS].to_table(), "nSources") == expected
    some = np.array(sorted(expected)[:7], np.int64)
    stored = read.rows_of_objects(home, paths.OBJECTS, some, columns=["diaObjectId", "nSources"])
    assert stored is not None and _by_id(stored, "nSources") == {int(i): expected[int(i)] for i in some}
    assert summary.holdings(home, read.datasets(home)).objects == len(expected)
    lake = access.open(home)
    assert _by_id(lake.to_arrow(paths.OBJECTS, ["diaObjectId", "nSources"]), "nSources") == expected
    duck = lake.duckdb().sql("SELECT diaObjectId, nSources FROM objects").to_arrow_table()
    assert _by_id(duck, "nSources") == expected
    frame = dask_client.compute(lake.to_dask(paths.OBJECTS, ["diaObjectId", "nSources"])).result()
    assert _by_id(pa.Table.from_pandas(frame, preserve_index=False), "nSources") == expected
    # the API: an object, and a cone search at its position
    current = read.datasets(home)[paths.OBJECTS].to_table(columns=["diaObjectId", "ra", "dec", paths.HPX29])
    for object_id in some.tolist():
        body = client.get(f"/api/v1/objects/{object_id}").json()
        assert int(body["object"]["diaObjectId"]) == object_id
        assert body["object"]["nSources"] == expected[object_id]
        row = current.filter(pc.equal(current["diaObjectId"], object_id))
        ra, dec = row["ra"][0].as_py(), row["dec"][0].as_py()
        cone = client.get("/api/v1/cone", params={"ra": ra, "dec": dec, "radius_arcsec": 1.0}).json()
        found = [int(o["diaObjectId"]) for o in cone["objects"]]
        assert found.count(object_id) == 1
        assert len(found) == len(set(found))
    # an export of one HEALPix pixel: the objects in it, once each
    pixel = int(current[paths.HPX29][0].as_py()) >> (2 * paths.HPX_ORDER_MAX)
    inside = {
        int(i)
        for i, h in zip(*(current[c].to_pylist() for c in ("diaObjectId", paths.HPX29)), strict=True)
        if h >> (2 * paths.HPX_ORDER_MAX) == pixel
    }
    out = home / f"export-{len(list(home.glob('export-*')))}"
    manifest = export(settings, paths.OBJECTS, Selection(healpix=(0, pixel)), out)
    exported = pa.concat_tables([pq.read_table(out / f["name"]) for f in manifest["files"]])
    assert _by_id(exported, "nSources") == {i: expected[i] for i in inside}
    return expected


def _client(settings: Settings) -> TestClient:
    unlimited = {"anonymous": 0, "user": 0, "annotator": 0, "power": 0, "admin": 0}
    return TestClient(create_app(settings.model_copy(update={"role_requests_per_minute": unlimited})))


def test_objects_seen_again_are_read_once_in_their_newest_state(returning: Settings, dask_client: Client) -> None:
    home = returning.home
    stored = read.arrow_dataset(_objects_table(home)).to_table(columns=["diaObjectId", paths.STATE_SEQ])
    distinct = len(pc.unique(stored["diaObjectId"]))
    assert stored.num_rows > distinct  # objects came back: several states are stored
    assert sorted(pc.unique(stored[paths.STATE_SEQ]).to_pylist()) == list(range(BATCHES))  # one per batch write
    with _client(returning) as client:
        expected = _check_every_reader(returning, client, dask_client)
    assert len(expected) == distinct

    # the lake as of its second batch: each object once, with the state it had then
    then = _detections(home, as_of=1)
    old = engine.query_lake(returning, "SELECT diaObjectId, nSources FROM objects", as_of=1)
    assert _by_id(old, "nSources") == then
    assert then != {i: expected[i] for i in then}  # the test means something: states changed since

    report = fold.fold(home, force=True)
    assert report.folded and report.rows_before == stored.num_rows and report.rows_after == distinct
    folded = _objects_table(home)
    assert object_states.folded_seq(folded) == BATCHES - 1
    assert read.arrow_dataset(folded).count_rows() == distinct  # the superseded states are gone
    with _client(returning) as client:
        assert _check_every_reader(returning, client, dask_client) == expected
    # time travel still reads the states as they were
    again = engine.query_lake(returning, "SELECT diaObjectId, nSources FROM objects", as_of=1)
    assert _by_id(again, "nSources") == then


def _states(ids: list[int], value: float) -> pa.Table:
    """Object states of ``ids``, with ``value`` in ``lastAlertMjdTai``; positions spread over the sky."""
    rng = np.random.default_rng(len(ids) + int(value))
    ra, dec = rng.uniform(0, 360, len(ids)), rng.uniform(-60, 20, len(ids))
    hpx = hp.ang2pix(1 << paths.HPX_ORDER_MAX, ra, dec, nest=True, lonlat=True)
    return pa.table(
        {
            "diaObjectId": pa.array(ids, pa.int64()),
            "ra": ra,
            "dec": dec,
            "lastAlertMjdTai": np.full(len(ids), value),
            paths.HPX29: pa.array(hpx, pa.int64()),
        }
    )


def _current(home: Path) -> dict[int, float]:
    return _by_id(read.datasets(home)[paths.OBJECTS].to_table(), "lastAlertMjdTai")


def _append(home: Path, ids: list[int], value: float, offset: int) -> int | None:
    with commit.lake_lock(home):
        seq = commit.append_states(home, paths.OBJECTS, _states(ids, value), {"nightjar:t:0": offset})
        commit.log_batch(home, {"nightjar:t:0": offset})
    return seq


def test_appends_are_exactly_once_and_sequenced(home: Path) -> None:
    assert _append(home, list(range(100)), 1.0, 0) == 0
    assert _append(home, list(range(50, 150)), 2.0, 1) == 1
    assert _append(home, [1, 2, 3], 9.0, 1) is None  # these offsets were committed: nothing written
    assert _current(home) == {i: (2.0 if i >= 50 else 1.0) for i in range(150)}
    assert read.arrow_dataset(_objects_table(home)).count_rows() == 200


def test_a_fold_racing_a_batch_commit_loses_nothing(home: Path) -> None:
    _append(home, list(range(1000)), 1.0, 0)
    _append(home, list(range(0, 1000, 2)), 2.0, 1)
    started = _objects_table(home)  # a fold reads this version...
    _append(home, list(range(0, 1000, 4)), 3.0, 2)  # ...while a batch commits newer states...
    _append(home, [5000], 3.0, 3)  # ...and a new object
    report = fold.fold(home, force=True, snapshot=started)  # ...then the fold commits
    assert report.folded and report.top == 1
    expected = {i: 3.0 if i % 4 == 0 else 2.0 if i % 2 == 0 else 1.0 for i in range(1000)} | {5000: 3.0}
    assert _current(home) == expected
    # the fold replaced exactly what it read: its 1,000 current rows, and the two later writes stay pending
    assert read.arrow_dataset(_objects_table(home)).count_rows() == 1000 + 250 + 1
    assert object_states.folded_seq(_objects_table(home)) == 1
    fold.fold(home, force=True)
    assert _current(home) == expected
    assert read.arrow_dataset(_objects_table(home)).count_rows() == 1001


def test_folds_running_beside_batch_commits_keep_every_newest_state(home: Path) -> None:
    _append(home, list(range(500)), 0.0, 0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_folding() -> None:
        while not stop.is_set():
            try:
                fold.fold(home, force=True)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
                return

    folder = threading.Thread(target=keep_folding)
    folder.start()
    try:
        for batch in range(1, 16):
            _append(home, list(range(batch * 7 % 50, 500, 3)), float(batch), batch)
    finally:
        stop.set()
        folder.join()
    assert not errors
    expected = dict.fromkeys(range(500), 0.0)
    for batch in range(1, 16):
        expected.update(dict.fromkeys(range(batch * 7 % 50, 500, 3), float(batch)))
    assert _current(home) == expected
    fold.fold(home, force=True)
    assert _current(home) == expected
    assert read.arrow_dataset(_objects_table(home)).count_rows() == 500


def test_background_compaction_folds_only_when_enough_states_are_pending(home: Path) -> None:
    _append(home, list(range(1000)), 1.0, 0)
    assert maintain.optimize(home, paths.OBJECTS)[0].commits == 1  # everything pending: folded
    _append(home, list(range(50)), 2.0, 1)  # 5 % of the folded rows
    assert not fold.due(_objects_table(home))
    assert maintain.optimize(home, paths.OBJECTS)[0].commits == 0
    assert fold.counts(_objects_table(home)) == (50, 1050)
    _append(home, list(range(50, 120)), 2.0, 2)  # now 12 %
    assert fold.due(_objects_table(home))
    assert maintain.optimize(home, paths.OBJECTS)[0].commits == 1
    assert fold.counts(_objects_table(home)) == (0, 1000)
    _append(home, [7], 3.0, 3)
    assert maintain.optimize(home, paths.OBJECTS, fold_all=True)[0].commits == 1  # the CLI folds whatever is pending
    assert _current(home) == {i: 3.0 if i == 7 else 2.0 if i < 120 else 1.0 for i in range(1000)}


def test_a_lake_upserted_before_merge_on_read_reads_and_folds(home: Path) -> None:
    assert commit.upsert(home, paths.OBJECTS, _states(list(range(100)), 1.0), {"nightjar:t:0": 0}, order=None)
    _append(home, list(range(50, 150)), 2.0, 1)  # rows without a stateSeq are the folded base
    _append(home, list(range(140, 160)), 3.0, 2)
    expected = {i: 3.0 if i >= 140 else 2.0 if i >= 50 else 1.0 for i in range(160)}
    assert _current(home) == expected
    assert fold.counts(_objects_table(home)) == (120, 220)
    fold.fold(home, force=True)
    assert _current(home) == expected
    assert fold.counts(_objects_table(home)) == (0, 160)
