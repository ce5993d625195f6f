"""Live watchlist and watchmap matching: the hits of real alerts on GCVS (59k cones) equal an independent astropy
computation at several radii, per-cone radii included, across RA = 0 and at the poles; a watchmap from a real MOC
holds exactly the alerts mocpy says are inside."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from mocpy import MOC

from nightjar.catalogs import watch_index, watchmap
from nightjar.catalogs.watch_files import CONES_SCHEMA
from nightjar.catalogs.watch_index import WatchlistSpec
from nightjar.pipelines import stages
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads
from nightjar.streams.replay import alert_files

ALERT_FOLDERS = ("lsst", "ztf")


@pytest.fixture(scope="module")
def real_alerts(data_dir: Path) -> pa.Table:
    """Every decodable real alert of ../shared/data/alerts (LSST and ZTF), as the watch stage sees them."""
    payloads = []
    for path in alert_files([data_dir / "alerts" / f for f in ALERT_FOLDERS]):
        try:
            payloads.extend(read_payloads(path))
        except Exception:  # the corrupt files are real bad input: the stage never sees them
            continue
    batch = stages.locate(decode_batch(RawBatch.from_payloads(payloads)), partition_order=5)
    alerts = alerts_of(batch.sources)
    assert alerts.num_rows > 200
    return alerts


# Alerts placed where geometry is delicate: either side of RA = 0, near both poles (ids beyond the real ones).
EDGE_POSITIONS = [
    (359.9999, 10.0),
    (0.0001, 10.0),
    (359.995, -30.0),
    (0.002, -30.0),
    (123.0, 89.9995),
    (303.0, 89.9990),
    (45.0, -89.9993),
    (225.0, -89.9996),
    (0.0, 0.0),
]
EDGE_CONES = [  # ra, dec, name, radius (None: the list's default)
    (0.0, 10.0, "ra0-north", 1.0),
    (359.99995, 10.0, "ra0-left", None),
    (0.0005, -30.0, "ra0-south", 20.0),
    (0.0, 90.0, "north-pole", 5.0),
    (180.0, 89.9999, "near-north-pole", 3.0),
    (0.0, -90.0, "south-pole", 4.0),
    (90.0, -89.9998, "near-south-pole", 2.5),
    (359.9999, 0.0, "origin", 0.5),
]


def edge_alerts() -> pa.Table:
    n = len(EDGE_POSITIONS)
    return pa.table(
        {
            "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 9_000_000_000),
            "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 9_100_000_000),
            "ra": pa.array([p[0] for p in EDGE_POSITIONS]),
            "dec": pa.array([p[1] for p in EDGE_POSITIONS]),
            "midpointMjdTai": pa.array(np.full(n, 60000.5)),
        }
    )


def gcvs_cones(data_dir: Path, radius: np.ndarray | None) -> pa.Table:
    gcvs = pq.read_table(data_dir / "catalogs" / "gcvs" / "gcvs.parquet")
    n = gcvs.num_rows
    names = [f"gcvs-{i}" for i in range(n)] + [c[2] for c in EDGE_CONES]
    extra_radius = [np.nan if c[3] is None else c[3] for c in EDGE_CONES]
    radii = np.concatenate([radius if radius is not None else np.full(n, np.nan), extra_radius])
    return pa.table(
        {
            "coneId": pa.array(np.arange(1, n + len(EDGE_CONES) + 1, dtype=np.int64)),
            "name": pa.array(names),
            "ra": pa.array(np.concatenate([gcvs["ra"].to_numpy(), [c[0] for c in EDGE_CONES]])),
            "dec": pa.array(np.concatenate([gcvs["dec"].to_numpy(), [c[1] for c in EDGE_CONES]])),
            "radius": pa.array(radii, mask=np.isnan(radii)),
        },
        schema=CONES_SCHEMA,
    )


def astropy_hits(cones: pa.Table, default: float, alerts: pa.Table) -> dict[tuple[int, int], float]:
    """(coneId, diaSourceId) -> separation (arcsec), by astropy alone."""
    radius = np.nan_to_num(cones["radius"].to_numpy(zero_copy_only=False).astype(float), nan=default)
    cone_at = SkyCoord(cones["ra"].to_numpy() * u.deg, cones["dec"].to_numpy() * u.deg)
    alert_at = SkyCoord(alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg)
    i_cone, i_alert, separation, _ = alert_at.search_around_sky(cone_at, radius.max() * 1.0001 * u.arcsec)
    seconds = separation.to_value(u.arcsec)
    keep = seconds <= radius[i_cone]
    ids = cones["coneId"].to_numpy()
    sources = alerts["diaSourceId"].to_numpy()
    return {
        (int(ids[c]), int(sources[s])): float(d)
        for s, c, d in zip(i_alert[keep], i_cone[keep], seconds[keep], strict=True)
    }


def stored_list(tmp_path: Path, cones: pa.Table, default: float, version: int) -> WatchlistSpec:
    path = tmp_path / f"cones-{version}.parquet"
    pq.write_table(watch_index.sorted_cones(cones), path)
    return WatchlistSpec(12, version, str(path), default)


@pytest.mark.parametrize(
    ("default", "per_cone"),
    [(2.0, False), (60.0, False), (1800.0, False), (5.0, True)],
    ids=["2arcsec", "60arcsec", "1800arcsec", "per-cone"],
)
def test_gcvs_hits_equal_astropy(
    tmp_path: Path, data_dir: Path, real_alerts: pa.Table, default: float, per_cone: bool
) -> None:
    rng = np.random.default_rng(5)
    n = pq.read_metadata(data_dir / "catalogs" / "gcvs" / "gcvs.parquet").num_rows
    # Per-cone radii from 0.5″ to 30′, a third of the cones on the list's default.
    radius = np.where(rng.random(n) < 0.33, np.nan, 10 ** rng.uniform(-0.3, np.log10(1800), n)) if per_cone else None
    cones = gcvs_cones(data_dir, radius)
    alerts = pa.concat_tables([real_alerts.drop_columns(["hpx29"]), edge_alerts()])
    alerts = alerts_of(alerts)
    spec = stored_list(tmp_path, cones, default, version=int(default * 10) + per_cone)
    hits = hits_of(alerts, WatchSet((spec,), ())).watchlist_hits

    expected = astropy_hits(cones, default, alerts)
    found = {
        (c, s): d
        for c, s, d in zip(
            hits["coneId"].to_pylist(),
            hits["diaSourceId"].to_pylist(),
            hits["separationArcsec"].to_pylist(),
            strict=True,
        )
    }
    assert len(found) == hits.num_rows  # each (cone, alert) once
    assert set(found) == set(expected)
    assert len(expected) >= 5
    for key, separation in expected.items():
        assert found[key] == pytest.approx(separation, abs=1e-6)
    # The edge cones were reached across RA = 0 and at the poles.
    names = set(hits["coneName"].to_pylist())
    edge_names = {c[2] for c in EDGE_CONES}
    expected_edge = {
        cones["name"][i].as_py()
        for i in range(cones.num_rows)
        if cones["coneId"][i].as_py() in {k[0] for k in expected}
    } & edge_names
    assert names & edge_names == expected_edge
    assert {"ra0-north", "north-pole", "south-pole"} <= expected_edge
    # The other columns come from the alert.
    by_source = {
        s: (o, m)
        for o, s, m in zip(
            *(alerts[c].to_pylist() for c in ("diaObjectId", "diaSourceId", "midpointMjdTai")), strict=True
        )
    }
    for o, s, m in zip(*(hits[c].to_pylist() for c in ("diaObjectId", "diaSourceId", "midpointMjdTai")), strict=True):
        assert by_source[s] == (o, m)
    assert set(hits["watchlistId"].to_pylist()) == {12}


def test_the_cone_index_is_built_once_per_version(tmp_path: Path, data_dir: Path, real_alerts: pa.Table) -> None:
    watch_index.clear_cache()
    spec = stored_list(tmp_path, gcvs_cones(data_dir, None), 2.0, version=1)
    first = watch_index.cached_index(spec, 1 << 30)
    assert watch_index.cached_index(spec, 1 << 30) is first
    newer = WatchlistSpec(spec.id, 2, spec.path, spec.radius_arcsec)
    assert watch_index.cached_index(newer, 1 << 30) is not first


@pytest.mark.parametrize("name", ["CDS-I-125A-catalog_MOC.fits", "polygon_moc.fits"])
def test_watchmap_holds_exactly_what_mocpy_says(
    tmp_path: Path, data_dir: Path, real_alerts: pa.Table, name: str
) -> None:
    moc, kind = watchmap.from_file(data_dir / "mocs" / name)
    assert kind == "moc"
    path = tmp_path / "area.fits"
    watchmap.save(moc, path)
    # Real alerts, and positions in and around the area so that both answers occur often: random ones within a
    # few degrees of it, and points of random cells inside it.
    rng = np.random.default_rng(3)
    centre = moc.barycenter()
    ra = (centre.ra.deg + rng.uniform(-8, 8, 20000)) % 360
    dec = np.clip(centre.dec.deg + rng.uniform(-8, 8, 20000), -90, 90)
    ranges = np.asarray(moc.to_depth29_ranges, dtype=np.int64)
    pick = rng.integers(0, len(ranges), 2000)
    cells = ranges[pick, 0] + (rng.random(2000) * (ranges[pick, 1] - ranges[pick, 0])).astype(np.int64)
    cell_ra, cell_dec = hp.pix2ang(1 << 29, cells, nest=True, lonlat=True)
    ra, dec = np.concatenate([ra, cell_ra]), np.concatenate([dec, cell_dec])
    n = ra.size
    synthetic = pa.table(
        {
            "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 1),
            "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 10**12),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "midpointMjdTai": pa.array(np.full(n, 60001.0)),
        }
    )
    alerts = alerts_of(pa.concat_tables([real_alerts.drop_columns(["hpx29"]), synthetic]))
    hits = hits_of(alerts, WatchSet((), (watchmap.WatchmapSpec(7, 1, str(path)),))).area_hits
    says = MOC.load(data_dir / "mocs" / name, format="fits").contains_lonlat(
        alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg
    )
    expected = set(alerts["diaSourceId"].filter(pa.array(says)).to_pylist())
    assert set(hits["diaSourceId"].to_pylist()) == expected
    assert hits.num_rows == len(expected) > 10
    assert set(hits["watchmapId"].to_pylist()) == {7}


def test_each_streaming_filter_sees_the_hits_its_owner_may_see(tmp_path: Path, data_dir: Path) -> None:
    from nightjar.pipelines.watch import match_batch
    from nightjar.pipelines.watch_filters import apply_filters
    from nightjar.settings import Settings
    from nightjar.sql.engine import limits
    from nightjar.sql.registry import Filter

    payloads = [p for f in alert_files([data_dir / "alerts" / "lsst" / "lsstcam-2025-v9.0"]) for p in read_payloads(f)]
    batch = stages.locate(decode_batch(RawBatch.from_payloads(payloads)), partition_order=5)
    alerts = alerts_of(batch.sources).slice(0, 4)
    cones = pa.table(
        {
            "coneId": pa.array([1, 2, 3, 4], pa.int64()),
            "name": [f"n{i}" for i in range(4)],
            "ra": alerts["ra"],
            "dec": alerts["dec"],
            "radius": pa.nulls(4, pa.float64()),
        },
        schema=CONES_SCHEMA,
    )
    specs = []
    for list_id, owner, public in ((1, "alice", False), (2, "alice", True), (3, "bob", False)):
        path = tmp_path / f"{list_id}.parquet"
        pq.write_table(watch_index.sorted_cones(cones), path)
        specs.append(WatchlistSpec(list_id, 1, str(path), 0.01, owner, public))
    watch = WatchSet(tuple(specs), ())
    hits = match_batch(batch, watch)
    assert sorted(set(hits.watchlist_hits["watchlistId"].to_pylist())) == [1, 2, 3]
    sql = "SELECT o.diaObjectId, w.watchlistId, w.diaSourceId FROM objects o JOIN watchlist_hits w USING (diaObjectId)"
    filters = [
        Filter(10, "a", sql, 1, owner="alice"),
        Filter(11, "b", sql, 1, owner="bob"),
        Filter(12, "c", sql, 1, owner="carol"),
        Filter(13, "plain", "SELECT diaObjectId, diaSourceId FROM sources WHERE psfFlux > 0", 1, owner="carol"),
    ]
    outcome = apply_filters(batch, filters, limits(Settings(home=tmp_path)), hits=hits, watch=watch)
    seen = [sorted(set(o.matches["watchlistId"].to_pylist())) for o in outcome.outputs[:3]]
    assert seen == [[1, 2], [2, 3], [2]]
    assert [o.filter.id for o in outcome.outputs] == [10, 11, 12, 13] and outcome.outputs[3].matches.num_rows > 0
