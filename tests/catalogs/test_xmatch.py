"""The crossmatch kernel against a brute-force astropy search: poles, partition edges, empty sky, large radii."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from distributed import Client

from nightjar.catalogs.build import BuildSpec
from nightjar.catalogs.cache import CACHE
from nightjar.catalogs.catalog import CatalogSet, ColumnMap, load_catalog_set
from nightjar.catalogs.import_catalog import import_catalog
from nightjar.catalogs.rules import Kind
from nightjar.catalogs.xmatch import crossmatch

ROWS = 30_000


def sphere(
    rng: np.random.Generator, n: int, dec_lo: float = -90.0, dec_hi: float = 90.0
) -> tuple[np.ndarray, np.ndarray]:
    s = rng.uniform(np.sin(np.radians(dec_lo)), np.sin(np.radians(dec_hi)), n)
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(s))


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> tuple[CatalogSet, pa.Table]:
    """Galaxies north of −30° (and around the south pole), sizes 0.3″-3″ with 1 % of 1′-5′ giants."""
    rng = np.random.default_rng(5)
    parts = [
        sphere(rng, ROWS // 3, -30.0, 90.0),
        sphere(rng, ROWS // 3, 78.0, 90.0),
        sphere(rng, ROWS // 3, -90, -84),
        sphere(rng, 2000, -30.0, -29.98),  # a sharp southern edge: empty sky just beyond it
    ]
    ra = np.concatenate([p[0] for p in parts])
    dec = np.concatenate([p[1] for p in parts])
    major = np.exp(rng.normal(0.0, 0.6, ra.size)) * 1.5  # full major axis, arcsec
    giants = rng.random(ra.size) < 0.01
    major[giants] = rng.uniform(60.0, 300.0, giants.sum())
    table = pa.table({"name": [f"G{i}" for i in range(ra.size)], "ra": ra, "dec": dec, "major": major})
    folder = tmp_path_factory.mktemp("galaxies")
    pq.write_table(table, folder / "galaxies.parquet")
    spec = BuildSpec(
        "galaxies",
        Kind.GALAXY,
        ColumnMap(ra="ra", dec="dec", id="name", major_axis="major"),
        partition_rows=800,
    )
    import_catalog(dask_client, folder, spec, [folder / "galaxies.parquet"], chunk_rows=7000)
    return load_catalog_set(folder), table


def brute_force(alert_ra: np.ndarray, alert_dec: np.ndarray, table: pa.Table) -> dict[tuple[int, str], float]:
    """Every (alert, galaxy) within the galaxy's reach, max(1.5″, 2.4 × semi-major axis), by astropy."""
    reach = np.maximum(1.5, np.minimum(2.4 * table["major"].to_numpy() / 2.0, 1800.0))
    cat = SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)
    alerts = SkyCoord(alert_ra * u.deg, alert_dec * u.deg)
    i_alert, i_cat, sep, _ = cat.search_around_sky(alerts, reach.max() * u.arcsec)
    ok = sep.arcsec <= reach[i_cat]
    names = np.asarray(table["name"].to_pylist())
    return {(int(a), str(names[c])): float(s) for a, c, s in zip(i_alert[ok], i_cat[ok], sep.arcsec[ok], strict=True)}


def alerts_for(table: pa.Table, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Alerts 0-10″ from galaxies, near giants, at random (poles included) and along the empty sky's edge."""
    ra = table["ra"].to_numpy()
    dec = table["dec"].to_numpy()
    near = rng.integers(0, ra.size, 8000)
    giants = np.flatnonzero(table["major"].to_numpy() > 60)
    around = rng.choice(giants, 2000)
    base = SkyCoord(np.r_[ra[near], ra[around]] * u.deg, np.r_[dec[near], dec[around]] * u.deg)
    radius = np.r_[rng.uniform(0, 10, near.size), rng.uniform(0, 200, around.size)]
    moved = base.directional_offset_by(rng.uniform(0, 360, radius.size) * u.deg, radius * u.arcsec)
    rand_ra, rand_dec = sphere(rng, 6000)
    # 1″ due south of the galaxies on the southern edge: into sky where the catalogue has no partition.
    on_edge = np.flatnonzero(dec < -29.98)
    south = SkyCoord(ra[on_edge] * u.deg, dec[on_edge] * u.deg).directional_offset_by(180 * u.deg, 1.0 * u.arcsec)
    edge_ra, edge_dec = south.ra.deg, south.dec.deg
    return (
        np.r_[moved.ra.deg, rand_ra, edge_ra],
        np.r_[moved.dec.deg, rand_dec, edge_dec],
    )


def kernel_pairs(matches: pa.Table) -> dict[tuple[int, str], float]:
    return {
        (int(a), str(n)): float(s)
        for a, n, s in zip(
            matches["object_index"].to_pylist(),
            matches["object_id"].to_pylist(),
            matches["separation_arcsec"].to_pylist(),
            strict=True,
        )
    }


def test_kernel_finds_exactly_the_brute_force_matches(galaxies: tuple[CatalogSet, pa.Table]) -> None:
    catalogs, table = galaxies
    assert len(catalogs.catalogs[0].pixels) > 40, "many partitions, so many edges"
    rng = np.random.default_rng(9)
    ra, dec = alerts_for(table, rng)
    expected = brute_force(ra, dec, table)
    got = kernel_pairs(crossmatch(ra, dec, catalogs))
    reach = dict(zip(table["name"].to_pylist(), np.maximum(1.5, 2.4 * table["major"].to_numpy() / 2.0), strict=True))

    def clear(pairs: dict[tuple[int, str], float]) -> set[tuple[int, str]]:
        # Positions decoded from _healpix_29 are exact to 0.4 mas: ignore pairs within 1 mas of their radius.
        return {k for k, s in pairs.items() if abs(s - reach[k[1]]) > 1e-3}

    assert len(expected) > 3000
    assert clear(got) == clear(expected)
    common = set(got) & set(expected)
    assert max(abs(got[k] - expected[k]) for k in common) < 1e-3  # arcsec


def test_alerts_beyond_the_catalogues_edge_match(tmp_path: Path, dask_client: Client) -> None:
    """A catalogue confined to one order-3 cell: alerts just outside it lie where there is no partition."""
    import healpy as hp

    pixel = 300
    vectors = hp.boundaries(8, pixel, step=100, nest=True).T  # points along the cell's edge
    edge_ra, edge_dec = hp.vec2ang(vectors, lonlat=True)
    centre_ra, centre_dec = hp.pix2ang(8, pixel, nest=True, lonlat=True)
    edge = SkyCoord(edge_ra * u.deg, edge_dec * u.deg)
    inward = edge.position_angle(SkyCoord(centre_ra * u.deg, centre_dec * u.deg))
    rows = edge.directional_offset_by(inward, 0.5 * u.arcsec)
    table = pa.table({"ra": rows.ra.deg, "dec": rows.dec.deg, "name": [f"E{i}" for i in range(len(rows))]})
    pq.write_table(table, tmp_path / "edge.parquet")
    spec = BuildSpec("edge", Kind.STAR, ColumnMap(ra="ra", dec="dec", id="name"))
    import_catalog(dask_client, tmp_path, spec, [tmp_path / "edge.parquet"])
    catalogs = load_catalog_set(tmp_path)
    assert list(zip(catalogs.catalogs[0].orders, catalogs.catalogs[0].pixels, strict=True)) == [(3, pixel)]
    alerts = edge.directional_offset_by(inward + 180 * u.deg, 0.5 * u.arcsec)  # 1″ from each row, outside
    outside = hp.ang2pix(8, alerts.ra.deg, alerts.dec.deg, nest=True, lonlat=True) != pixel
    assert outside.mean() > 0.9
    got = crossmatch(alerts.ra.deg, alerts.dec.deg, catalogs)
    pairs = set(zip(got["object_index"].to_pylist(), got["object_id"].to_pylist(), strict=True))
    assert {(i, f"E{i}") for i in np.flatnonzero(outside)} <= pairs
    np.testing.assert_allclose(got["separation_arcsec"].to_numpy(), 1.0, atol=2e-3)


def test_polar_alerts_match(galaxies: tuple[CatalogSet, pa.Table]) -> None:
    catalogs, table = galaxies
    polar = np.abs(table["dec"].to_numpy()) > 89.5
    ra = table["ra"].to_numpy()[polar]
    dec = table["dec"].to_numpy()[polar]
    got = crossmatch(ra, dec, catalogs)
    names = np.asarray(table["name"].to_pylist())[polar]
    found = set(zip(got["object_index"].to_pylist(), got["object_id"].to_pylist(), strict=True))
    assert polar.sum() > 20
    assert {(i, str(n)) for i, n in enumerate(names)} <= found  # each galaxy matches an alert on itself


def test_warm_batches_are_served_from_the_cache(galaxies: tuple[CatalogSet, pa.Table]) -> None:
    catalogs, _ = galaxies
    rng = np.random.default_rng(3)
    ra, dec = sphere(rng, 3000)
    CACHE.clear()
    first = crossmatch(ra, dec, catalogs)
    cold = CACHE.stats()
    second = crossmatch(ra, dec, catalogs)
    warm = CACHE.stats()
    assert cold.misses > 10
    assert warm.misses == cold.misses, "the second batch builds nothing"
    assert warm.hits - cold.hits >= cold.misses
    assert first.equals(second)


def test_cache_respects_its_budget(galaxies: tuple[CatalogSet, pa.Table]) -> None:
    catalogs, _ = galaxies
    small = CatalogSet(catalogs.catalogs, catalogs.rules, cache_bytes=50_000)
    rng = np.random.default_rng(4)
    ra, dec = sphere(rng, 3000)
    CACHE.clear()
    expected = crossmatch(ra, dec, catalogs)
    CACHE.clear()
    got = crossmatch(ra, dec, small)
    stats = CACHE.stats()
    assert stats.evictions > 0 and stats.bytes <= 50_000 + max(1, stats.bytes // max(stats.entries, 1))
    assert got.equals(expected)


def test_empty_batch_and_empty_catalogue_set(galaxies: tuple[CatalogSet, pa.Table], tmp_path: Path) -> None:
    catalogs, _ = galaxies
    assert crossmatch(np.empty(0), np.empty(0), catalogs).num_rows == 0
    assert crossmatch(np.array([10.0]), np.array([10.0]), CatalogSet(())).num_rows == 0
    assert load_catalog_set(tmp_path).catalogs == ()
    with pytest.raises(ValueError, match="no such catalogue: nope"):
        load_catalog_set(tmp_path, ["nope"])
