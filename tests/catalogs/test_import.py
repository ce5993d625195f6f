"""Importing real catalogues into the HATS layout: hats and lsdb read them, rows and partitions are right."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from distributed import Client

from nightjar.catalogs import layout
from nightjar.catalogs.build import BuildSpec
from nightjar.catalogs.catalog import ColumnMap, list_catalogs, read_info
from nightjar.catalogs.import_catalog import import_catalog
from nightjar.catalogs.rules import Kind

NAMES = ["3hsp", "4lac", "gcvs", "gcvs-cv", "hipparcos", "openngc", "spicy"]


def expected_rows(source: Any, data_dir: Path) -> int:
    """Rows with a position (and a kept type), counted straight from the source files."""
    table = source.read(data_dir)
    cols = source.columns
    ok = pc.and_(pc.is_valid(table[cols.ra]), pc.is_valid(table[cols.dec]))
    ok = pc.and_(ok, pc.and_(pc.invert(pc.is_nan(table[cols.ra])), pc.invert(pc.is_nan(table[cols.dec]))))
    if cols.keep_types:
        ok = pc.and_(ok, pc.is_in(pc.utf8_trim_whitespace(table[cols.type]), pa.array(cols.keep_types)))
    return int(pc.sum(ok).as_py())


def read_partitions(catalog_dir: Path) -> list[tuple[int, int, pa.Table]]:
    out = []
    for f in sorted((catalog_dir / "dataset").rglob("Npix=*.parquet")):
        order = int(f.parent.parent.name.split("=")[1])
        pixel = int(f.stem.split("=")[1])
        out.append((order, pixel, pq.read_table(f)))
    return out


def test_every_real_catalogue_is_imported(catalog_sources: dict[str, Any]) -> None:
    assert sorted(catalog_sources) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_hats_reads_every_imported_catalogue(
    catalog_home: Path, data_dir: Path, catalog_sources: dict[str, Any], name: str
) -> None:
    import hats
    from hats.io.validation import is_valid_catalog

    collection = layout.collection_dir(catalog_home, name)
    opened = hats.read_hats(collection)
    assert type(opened).__name__ == "CatalogCollection"
    assert opened.main_catalog.catalog_info.total_rows == expected_rows(catalog_sources[name], data_dir)
    logging.getLogger().setLevel(logging.ERROR)  # hats logs a warning when handed a collection
    assert is_valid_catalog(layout.primary_dir(collection), strict=True)
    info = read_info(collection)
    if info.margin_rows:
        margin = hats.read_hats(layout.margin_dir(collection, info.margin_threshold_arcsec))
        assert margin.catalog_info.catalog_type == "margin"
        assert margin.catalog_info.margin_threshold == 5.0
        assert is_valid_catalog(layout.margin_dir(collection, info.margin_threshold_arcsec), strict=True)


def test_partitions_are_sorted_and_hold_their_own_sky(catalog_home: Path) -> None:
    from hats.pixel_math.spatial_index import compute_spatial_index

    partitions = read_partitions(layout.primary_dir(layout.collection_dir(catalog_home, "gcvs")))
    assert len(partitions) > 20, "small partitions were asked for"
    orders = {o for o, _, _ in partitions}
    assert len(orders) > 1, "partitions are adaptive: several orders"
    total = 0
    for order, pixel, table in partitions:
        index = table[layout.SPATIAL_INDEX].to_numpy()
        assert np.all(np.diff(index) >= 0)
        assert np.all(index >> (2 * (29 - order)) == pixel)
        assert table.num_rows <= 4000
        ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
        assert np.array_equal(index, compute_spatial_index(ra, dec))  # hats' own index, from cdshealpix
        total += table.num_rows
    assert total == 59_099


def test_margin_holds_every_row_near_a_partition_edge(catalog_home: Path) -> None:
    """An alert anywhere in a partition finds every row within 5″ in the partition or its margin."""
    collection = layout.collection_dir(catalog_home, "gcvs")
    info = read_info(collection)
    primary = read_partitions(layout.primary_dir(collection))
    margin = {(o, p): t for o, p, t in read_partitions(layout.margin_dir(collection, info.margin_threshold_arcsec))}
    rows = pa.concat_tables([t for _, _, t in primary])
    order_of_row = np.concatenate([np.full(t.num_rows, o) for o, _, t in primary])
    index = rows["_healpix_29"].to_numpy()
    # Rows whose order-14 cell (13″) touches another partition: probes 0-5″ around them cross edges.
    cell = index >> (2 * (29 - 14))
    neighbours = hp.get_all_neighbours(1 << 14, cell, nest=True)
    shift = 2 * (14 - order_of_row)
    near_edge = ((neighbours >= 0) & ((neighbours >> shift) != (cell >> shift))).any(axis=0)
    rng = np.random.default_rng(11)
    pick = rng.choice(np.flatnonzero(near_edge), 20_000)
    src = SkyCoord(rows["ra"].to_numpy()[pick] * u.deg, rows["dec"].to_numpy()[pick] * u.deg)
    probe = src.directional_offset_by(rng.uniform(0, 360, pick.size) * u.deg, rng.uniform(0, 5, pick.size) * u.arcsec)
    probe_index = hp.ang2pix(1 << 29, probe.ra.deg, probe.dec.deg, nest=True, lonlat=True)
    crossings = 0
    for order, pixel, table in primary:
        here = (probe_index >> (2 * (29 - order))) == pixel
        if not here.any():
            continue
        wanted = set(rows["_healpix_29"].to_numpy()[pick[here]].tolist())
        available = set(table["_healpix_29"].to_numpy().tolist())
        if (order, pixel) in margin:
            available |= set(margin[(order, pixel)]["_healpix_29"].to_numpy().tolist())
        crossings += len(wanted - set(table["_healpix_29"].to_numpy().tolist()))
        assert wanted <= available, f"partition {order}/{pixel} misses rows within 5″"
    assert crossings >= 10, "the probes did cross partition edges"


def test_lsdb_opens_a_catalogue_with_its_margin(catalog_home: Path, data_dir: Path) -> None:
    import lsdb

    catalog = lsdb.open_catalog(layout.collection_dir(catalog_home, "gcvs"), columns="all")
    assert catalog.margin is not None
    assert catalog.hc_structure.catalog_info.total_rows == 59_099
    found = catalog.cone_search(ra=266.4, dec=-29.0, radius_arcsec=1800).compute()
    source = pq.read_table(data_dir / "catalogs/gcvs/gcvs.parquet")
    sep = SkyCoord(source["ra"].to_numpy() * u.deg, source["dec"].to_numpy() * u.deg).separation(
        SkyCoord(266.4 * u.deg, -29.0 * u.deg)
    )
    assert len(found) == int((sep.arcsec < 1800).sum()) > 100
    assert {"ra", "dec", "object_id", "object_type", "VarType"} <= set(found.columns)


def test_openngc_keeps_galaxies_with_sizes_in_arcsec(catalog_home: Path, data_dir: Path) -> None:
    table = pa.concat_tables(
        [t for _, _, t in read_partitions(layout.primary_dir(layout.collection_dir(catalog_home, "openngc")))]
    )
    assert set(pc.unique(table["object_type"]).to_pylist()) <= {"G", "GPair", "GTrpl", "GGroup"}
    source = pq.read_table(data_dir / "catalogs/openngc/openngc_objects.parquet").to_pandas().set_index("name")
    sample = table.slice(0, 200).to_pandas().set_index("object_id")
    majax = source.loc[sample.index, "majax"]
    np.testing.assert_allclose(sample["semi_major_arcsec"], majax * 60 / 2, rtol=1e-12)
    np.testing.assert_allclose(sample["z"], source.loc[sample.index, "redshift"], rtol=1e-12)


def test_csv_and_fits_imports_match_the_parquet_import(
    tmp_path: Path, dask_client: Client, data_dir: Path, catalog_home: Path
) -> None:
    source = pq.read_table(data_dir / "catalogs/3hsp/3hsp.parquet").select(["3HSP Source name", "ra_deg", "dec_deg"])
    csv_file = tmp_path / "3hsp.csv"
    pcsv.write_csv(source, csv_file)
    fits_file = tmp_path / "3hsp.fits"
    Table(
        {
            "name": source["3HSP Source name"].to_pylist(),
            "RA": source["ra_deg"].to_numpy(),
            "DEC": source["dec_deg"].to_numpy(),
        }
    ).write(fits_file)
    home = tmp_path / "home"
    for fmt, path, cols in [
        ("csv", csv_file, ColumnMap(ra="ra_deg", dec="dec_deg", id="3HSP Source name")),
        ("fits", fits_file, ColumnMap(ra="RA", dec="DEC", id="name")),
    ]:
        info = import_catalog(dask_client, home, BuildSpec(f"hsp-{fmt}", Kind.AGN, cols), [path], chunk_rows=500)
        assert info.rows == 2013

    def positions(name: str, home: Path) -> list[tuple[str, float, float]]:
        tables = [t for _, _, t in read_partitions(layout.primary_dir(layout.collection_dir(home, name)))]
        t = pa.concat_tables(tables)
        return sorted(zip(t["object_id"].to_pylist(), t["ra"].to_pylist(), t["dec"].to_pylist(), strict=True))

    reference = positions("3hsp", catalog_home)
    assert positions("hsp-csv", home) == reference
    assert positions("hsp-fits", home) == reference


def test_reimport_gives_a_new_version(tmp_path: Path, dask_client: Client, data_dir: Path) -> None:
    spec = BuildSpec("hsp", Kind.AGN, ColumnMap(ra="ra_deg", dec="dec_deg"))
    path = [data_dir / "catalogs/3hsp/3hsp.parquet"]
    first = import_catalog(dask_client, tmp_path, spec, path)
    second = import_catalog(dask_client, tmp_path, spec, path)
    assert first.version != second.version
    assert [i.version for i in list_catalogs(tmp_path)] == [second.version]
    assert not [p for p in layout.root(tmp_path).iterdir() if p.name.startswith(".")], "staging left behind"


def test_bad_input_gives_clear_errors(tmp_path: Path, dask_client: Client, data_dir: Path) -> None:
    path = [data_dir / "catalogs/3hsp/3hsp.parquet"]
    with pytest.raises(ValueError, match=r"no column 'RA'.*ra_deg"):
        import_catalog(dask_client, tmp_path, BuildSpec("x", Kind.AGN, ColumnMap(ra="RA", dec="dec_deg")), path)
    with pytest.raises(ValueError, match="invalid catalogue name"):
        import_catalog(dask_client, tmp_path, BuildSpec("../x", Kind.AGN, ColumnMap(ra="ra_deg", dec="dec_deg")), path)
    bad = tmp_path / "bad.csv"
    bad.write_text("ra,dec\n10.0,45.0\n20.0,95.0\n")
    with pytest.raises(ValueError, match=r"1 rows have positions outside the sky.*'dec'.*\[-90, 90\], found 95.0"):
        import_catalog(dask_client, tmp_path, BuildSpec("bad", Kind.STAR, ColumnMap(ra="ra", dec="dec")), [bad])
    odd = tmp_path / "stars.dat"
    odd.write_text("ra dec\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        import_catalog(dask_client, tmp_path, BuildSpec("x", Kind.STAR, ColumnMap(ra="ra", dec="dec")), [odd])
    with pytest.raises(FileNotFoundError, match=r"no \.parquet files"):
        import_catalog(dask_client, tmp_path, BuildSpec("x", Kind.STAR, ColumnMap(ra="ra", dec="dec")), [tmp_path])
    with pytest.raises(FileNotFoundError):
        import_catalog(
            dask_client, tmp_path, BuildSpec("x", Kind.STAR, ColumnMap(ra="ra", dec="dec")), [tmp_path / "none.csv"]
        )
    empty = tmp_path / "empty.csv"
    empty.write_text("ra,dec\n,\n")
    with pytest.raises(ValueError, match="no rows with a position"):
        import_catalog(dask_client, tmp_path, BuildSpec("empty", Kind.STAR, ColumnMap(ra="ra", dec="dec")), [empty])
    assert list_catalogs(tmp_path) == []
