"""Watch files on object storage (``NIGHTJAR_CATALOGS_URI=s3://...``), on the real S3-compatible server of the
session: watchlists, watchmaps and skymaps are stored there, read there by the matcher with the same hits as on a
local disk and as astropy's, and an older home's watch folders move there (or to a local root) on start, by two
processes at once too."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from distributed import Client
from mocpy import MOC

from nightjar import paths
from nightjar.catalogs import skymap_store, watch_store
from nightjar.catalogs.skymap import read_skymap
from nightjar.catalogs.watch_index import WatchlistSpec
from nightjar.catalogs.watch_migrate import migrate_watch_files, watch_root
from nightjar.catalogs.watch_store import WatchStoreError
from nightjar.catalogs.watchmap import from_circle
from nightjar.pipelines.run import run
from nightjar.pipelines.skymap_match import skymap_hits
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry
from nightjar.storage import CatalogsRoot, StorageError
from nightjar.streams import simulate

from ..conftest import S3Server
from ..kafka_offsets import committed
from .test_watch import astropy_hits, gcvs_cones

RADIUS = 20.0  # arcsec, the lists' default


@pytest.fixture
def s3_root(s3_server: S3Server) -> CatalogsRoot:
    return CatalogsRoot(f"s3://{s3_server.create_bucket()}/catalogs", s3_server.options)


@pytest.fixture(scope="module")
def cones(data_dir: Path) -> pa.Table:
    """3,000 GCVS stars as cones (a third with their own radius), and the edge cones of ``test_watch``."""
    every = gcvs_cones(data_dir, None)
    rng = np.random.default_rng(11)
    keep = np.sort(
        np.concatenate([rng.choice(every.num_rows - 8, 3000, replace=False), np.arange(-8, 0) % every.num_rows])
    )
    picked = every.take(pa.array(keep))
    radius = np.where(rng.random(picked.num_rows) < 0.3, rng.uniform(1, 60, picked.num_rows), np.nan)
    return picked.set_column(
        picked.schema.get_field_index("radius"), "radius", pa.array(radius, mask=np.isnan(radius))
    ).set_column(0, "coneId", pa.array(np.arange(1, picked.num_rows + 1, dtype=np.int64)))


@pytest.fixture(scope="module")
def alerts(cones: pa.Table) -> pa.Table:
    """Alerts within a minute of arc of half the cones (inside and outside their radius), and anywhere."""
    rng = np.random.default_rng(12)
    near = rng.choice(cones.num_rows, cones.num_rows // 2, replace=False)
    ra0 = cones["ra"].to_numpy()[near]
    dec0 = cones["dec"].to_numpy()[near]
    offset = rng.uniform(0, 60, near.size) / 3600
    angle = rng.uniform(0, 2 * np.pi, near.size)
    dec = np.clip(dec0 + offset * np.sin(angle), -90, 90)
    ra = (ra0 + offset * np.cos(angle) / np.maximum(np.cos(np.radians(dec)), 1e-6)) % 360
    ra = np.concatenate([ra, rng.uniform(0, 360, 500)])
    dec = np.concatenate([dec, np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))])
    n = ra.size
    return alerts_of(
        pa.table(
            {
                "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 1_000),
                "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 5_000_000),
                "ra": pa.array(ra),
                "dec": pa.array(dec),
                "midpointMjdTai": pa.array(np.full(n, 60000.5)),
            }
        )
    )


def _hits(watch: WatchSet, alerts: pa.Table) -> dict[tuple[int, int], float]:
    found = hits_of(alerts, watch).watchlist_hits
    columns = (found[c].to_pylist() for c in ("coneId", "diaSourceId", "separationArcsec"))
    return {(c, s): d for c, s, d in zip(*columns, strict=True)}


def _same(found: dict[tuple[int, int], float], expected: dict[tuple[int, int], float]) -> None:
    assert found.keys() == expected.keys() and len(found) > 100
    assert max(abs(found[k] - expected[k]) for k in found) < 1e-6


def _keys(root: CatalogsRoot, folder: str) -> list[str]:
    return watch_store.list_files(root, folder)


def test_watchlists_and_watchmaps_live_on_s3(
    settings: Settings, s3_root: CatalogsRoot, cones: pa.Table, alerts: pa.Table
) -> None:
    db = registry.engine(settings.metadata_url)
    on_s3 = watch_registry.add_watchlist(db, s3_root, "stars", cones, radius_arcsec=RADIUS)
    local = watch_registry.add_watchlist(db, settings.home, "stars-here", cones, radius_arcsec=RADIUS)
    folder = f"{paths.WATCH_DIR}/{paths.WATCHLISTS_DIR}/{on_s3.id}"
    assert _keys(s3_root, folder) == ["v1.parquet"]
    assert not (paths.catalogs_dir(settings.home) / folder).exists()  # nothing of it on the local disk
    spec = on_s3.spec(s3_root)
    assert spec.root == s3_root and spec.path == f"{folder}/v1.parquet"
    expected = astropy_hits(cones, RADIUS, alerts)
    _same(_hits(WatchSet((spec,)), alerts), expected)
    assert _hits(WatchSet((local.spec(settings.home),)), alerts) == _hits(WatchSet((spec,)), alerts)
    assert watch_registry.read_cones(s3_root, on_s3).equals(watch_registry.read_cones(settings.home, local))

    # Two edits: a version each; the version before the newest is kept for batches in flight.
    gone = cones["name"].to_pylist()[:100]
    edited, changed = watch_registry.edit_watchlist(db, s3_root, on_s3.id, remove=gone)
    assert changed and edited.version == 2 and _keys(s3_root, folder) == ["v1.parquet", "v2.parquet"]
    edited, _ = watch_registry.edit_watchlist(db, s3_root, on_s3.id, radius_arcsec=30.0)
    assert edited.version == 3 and _keys(s3_root, folder) == ["v2.parquet", "v3.parquet"]
    left = cones.slice(100)
    _same(_hits(WatchSet((edited.spec(s3_root),)), alerts), astropy_hits(left, 30.0, alerts))

    # A watchmap: a circle of 4° around an alert, its MOC on S3.
    ra, dec = alerts["ra"][0].as_py(), alerts["dec"][0].as_py()
    area = from_circle(ra, dec, 4 * 3600.0)
    made = watch_registry.add_watchmap(db, s3_root, "circle", area, "circle")
    map_folder = f"{paths.WATCH_DIR}/{paths.WATCHMAPS_DIR}/{made.id}"
    assert _keys(s3_root, map_folder) == ["v1.fits"]
    here = watch_registry.add_watchmap(db, settings.home, "circle-here", area, "circle")
    inside = hits_of(alerts, WatchSet((), (made.spec(s3_root),))).area_hits["diaSourceId"].to_pylist()
    at = area.contains_lonlat(alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg)
    assert sorted(inside) == sorted(alerts["diaSourceId"].to_numpy()[at].tolist()) and inside
    assert hits_of(alerts, WatchSet((), (here.spec(settings.home),))).area_hits["diaSourceId"].to_pylist() == inside
    moved, _ = watch_registry.edit_watchmap(db, s3_root, made.id, moc=from_circle(ra, dec, 60.0), kind="circle")
    assert moved.version == 2 and _keys(s3_root, map_folder) == ["v1.fits", "v2.fits"]

    # Deleting removes every file of the list from the store.
    watch_registry.delete_watchlist(db, s3_root, on_s3.id, lake=settings.lake)
    watch_registry.delete_watchmap(db, s3_root, made.id, lake=settings.lake)
    assert _keys(s3_root, folder) == [] and _keys(s3_root, map_folder) == []
    db.dispose()


def test_a_missing_watch_file_fails_loudly_and_an_unreachable_store_names_itself(
    settings: Settings, s3_root: CatalogsRoot, s3_server: S3Server, cones: pa.Table, alerts: pa.Table
) -> None:
    lost = WatchlistSpec(99, 1, paths.watchlist_key(99, 1), RADIUS, root=s3_root)
    with pytest.raises(WatchStoreError, match=f"{s3_root.uri}/_watch/watchlists/99/v1.parquet"):
        hits_of(alerts, WatchSet((lost,)))
    nowhere = CatalogsRoot("s3://no-such-bucket-here/catalogs", s3_server.options)
    db = registry.engine(settings.metadata_url)
    with pytest.raises(WatchStoreError, match="no-such-bucket-here") as failed:
        watch_registry.add_watchlist(db, nowhere, "lost", cones)
    assert "no bucket" in str(failed.value)
    assert watch_registry.list_watchlists(db) == []  # the row was not committed
    with pytest.raises(StorageError, match="no bucket 'no-such-bucket-here'"):
        skymap_store.list_skymaps(nowhere)  # never "no maps"
    with pytest.raises(StorageError, match="must be given"):
        watch_registry.delete_watchlist(db, nowhere, 1)
    db.dispose()


def test_skymaps_live_on_s3(settings: Settings, s3_root: CatalogsRoot, data_dir: Path, alerts: pa.Table) -> None:
    skymap = read_skymap(data_dir / "skymaps" / "bayestar.multiorder.fits")
    info = skymap_store.add_skymap(s3_root, skymap)
    skymap_store.add_skymap(settings.home, skymap)
    folder = paths.skymap_key(info.id)
    assert _keys(s3_root, folder) == ["cells.parquet", "moc50.fits", "moc90.fits", "skymap.json"]
    assert [i.id for i in skymap_store.list_skymaps(s3_root)] == [info.id]
    (spec,) = skymap_store.active_specs(s3_root)
    assert spec.root == s3_root and spec.folder == folder
    region = MOC.from_fits(io.BytesIO(watch_store.read_bytes(s3_root, f"{folder}/moc90.fits")))
    # alerts in the event's window, a thousand of them around its 90 % region
    rng = np.random.default_rng(4)
    centre = region.barycenter()
    ra = np.concatenate([alerts["ra"].to_numpy(), (centre.ra.deg + rng.uniform(-15, 15, 1000)) % 360])
    dec = np.concatenate([alerts["dec"].to_numpy(), np.clip(centre.dec.deg + rng.uniform(-15, 15, 1000), -90, 90)])
    n = ra.size
    timed = alerts_of(
        pa.table(
            {
                "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 1),
                "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 1),
                "ra": pa.array(ra),
                "dec": pa.array(dec),
                "midpointMjdTai": pa.array(info.event_mjd + rng.uniform(0, 5, n)),
            }
        )
    )
    found = skymap_hits(timed, (spec,), 1 << 30)
    local = skymap_hits(timed, skymap_store.active_specs(settings.home), 1 << 30)
    assert found.num_rows > 0 and found.drop(["skymapId"]).equals(local.drop(["skymapId"]))
    skymap_store.set_active(s3_root, info.id, False)
    assert skymap_store.active_specs(s3_root) == () and len(skymap_store.active_specs(settings.home)) == 1
    skymap_store.remove_skymap(s3_root, info.id)
    assert skymap_store.list_skymaps(s3_root) == [] and _keys(s3_root, folder) == []


def _old_home(home: Path, cones: pa.Table, data_dir: Path) -> tuple[int, int, int]:
    """A home in the older layout: a watchlist, a watchmap and a skymap under NIGHTJAR_HOME itself."""
    settings = Settings(home=home)
    db = registry.engine(settings.metadata_url)
    made = watch_registry.add_watchlist(db, home, "stars", cones, radius_arcsec=RADIUS)
    area = watch_registry.add_watchmap(db, home, "circle", from_circle(10.0, 20.0, 600.0), "circle")
    db.dispose()
    skymap = skymap_store.add_skymap(home, read_skymap(data_dir / "skymaps" / "bayestar.multiorder.fits"))
    new = paths.catalogs_dir(home)
    shutil.move(new / paths.WATCH_DIR / paths.WATCHLISTS_DIR, home / paths.OLD_WATCHLISTS_DIR)
    shutil.move(new / paths.WATCH_DIR / paths.WATCHMAPS_DIR, home / paths.OLD_WATCHMAPS_DIR)
    shutil.move(new / paths.SKYMAPS_DIR, home / paths.OLD_SKYMAPS_DIR)
    return made.id, area.id, skymap.id


def _old_files(home: Path) -> list[str]:
    return sorted(
        p.relative_to(home / old).as_posix()
        for old in (paths.OLD_WATCHLISTS_DIR, paths.OLD_WATCHMAPS_DIR, paths.OLD_SKYMAPS_DIR)
        for p in (home / old).rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_older_home_moves_its_watch_files(
    home: Path, s3_server: S3Server, data_dir: Path, cones: pa.Table, alerts: pa.Table, where: str
) -> None:
    list_id, map_id, skymap_id = _old_home(home, cones, data_dir)
    before = _old_files(home)
    settings = Settings(home=home)
    if where == "s3":
        bucket = s3_server.create_bucket()
        settings = Settings(home=home, catalogs_uri=f"s3://{bucket}/catalogs", storage_options=s3_server.options)
    root = watch_root(settings)  # what `nightjar run`, `serve` and the watch commands call on start
    db = registry.engine(settings.metadata_url)
    lists, maps = watch_registry.active_specs(db, root)
    db.dispose()
    assert [s.id for s in lists] == [list_id] and [s.id for s in maps] == [map_id]
    _same(_hits(WatchSet(lists), alerts), astropy_hits(cones, RADIUS, alerts))
    assert watch_store.exists(root, lists[0].path) and watch_store.exists(root, maps[0].path)
    assert [s.id for s in skymap_store.list_skymaps(root)] == [skymap_id]
    for old in (paths.OLD_WATCHLISTS_DIR, paths.OLD_WATCHMAPS_DIR, paths.OLD_SKYMAPS_DIR):
        assert not (home / old).exists()
        kept = home / (old + paths.OLD_UPLOADED_SUFFIX)
        assert kept.is_dir() == (where == "s3")  # copied to object storage: the local files are kept beside
    if where == "s3":
        kept_files = [
            p.relative_to(home / (old + paths.OLD_UPLOADED_SUFFIX)).as_posix()
            for old in (paths.OLD_WATCHLISTS_DIR, paths.OLD_WATCHMAPS_DIR, paths.OLD_SKYMAPS_DIR)
            for p in (home / (old + paths.OLD_UPLOADED_SUFFIX)).rglob("*")
            if p.is_file()
        ]
        assert sorted(kept_files) == before
    assert migrate_watch_files(home, root) == []  # done once


MIGRATE = """
import sys
from pathlib import Path
from nightjar.catalogs.watch_migrate import migrate_watch_files
from nightjar.storage import CatalogsRoot
print(migrate_watch_files(Path(sys.argv[1]), CatalogsRoot(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:]))))
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_processes_migrating_at_once(
    home: Path, s3_server: S3Server, data_dir: Path, cones: pa.Table, alerts: pa.Table, where: str
) -> None:
    _old_home(home, cones, data_dir)
    before = _old_files(home)
    if where == "s3":
        root = CatalogsRoot(f"s3://{s3_server.create_bucket()}/catalogs", s3_server.options)
    else:
        root = CatalogsRoot(str(home / "elsewhere" / "catalogs"))
    options = [f"{k}={v}" for k, v in root.options.items()]
    command = [sys.executable, "-c", MIGRATE, str(home), root.uri, *options]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    moved = sorted(out.decode().strip() for out, _ in outputs)
    assert moved == ["['watchlists', 'watchmaps', 'skymaps']", "[]"]  # one did it all, the other found it done
    stored = sorted(
        f"{name}/{file}"
        for folder in (f"{paths.WATCH_DIR}/{paths.WATCHLISTS_DIR}", f"{paths.WATCH_DIR}/{paths.WATCHMAPS_DIR}")
        for name in watch_store.list_folders(root, folder)
        for file in watch_store.list_files(root, f"{folder}/{name}")
    ) + sorted(
        f"{name}/{file}"
        for name in watch_store.list_folders(root, paths.SKYMAPS_DIR)
        for file in watch_store.list_files(root, f"{paths.SKYMAPS_DIR}/{name}")
    )
    assert sorted(stored) == before
    assert sorted(p.name for p in home.iterdir() if p.name.endswith(paths.OLD_UPLOADED_SUFFIX)) == (
        sorted(f"{o}{paths.OLD_UPLOADED_SUFFIX}" for o in ("skymaps", "watchlists", "watchmaps"))
        if where == "s3"
        else []
    )
    db = registry.engine(Settings(home=home).metadata_url)
    lists, _ = watch_registry.active_specs(db, root)
    db.dispose()
    _same(_hits(WatchSet(lists), alerts), astropy_hits(cones, RADIUS, alerts))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_watch_file_missing_on_the_store_fails_the_batch_and_commits_no_offset(
    kafka_settings: Settings, s3_root: CatalogsRoot, dask_client: Client, cones: pa.Table
) -> None:
    settings = kafka_settings.model_copy(
        update={"catalogs_uri": s3_root.uri, "storage_options": dict(s3_root.options), "batch_size": 100}
    )
    db = registry.engine(settings.metadata_url)
    made = watch_registry.add_watchlist(db, settings.catalogs, "vanishing", cones)
    db.dispose()
    watch_store.delete_file(s3_root, made.key)  # lost behind the registry's back
    topic = f"lost-list-{uuid.uuid4().hex[:8]}"
    simulate.produce(settings, topic, 100, seed=3, config=simulate.SimConfig(history_days=0))
    with pytest.raises(Exception, match=made.key):
        run(settings, dask_client, topic, max_alerts=100, idle_exit_s=30)
    assert all(o < 0 for o in committed(settings, topic))  # the alerts will be read again
