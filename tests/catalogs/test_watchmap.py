"""Watchmap areas: real MOC files (NUNIQ and RANGE), a probability map's credible region, polygons and circles;
files that are not MOCs, MOCs of impossible orders and empty areas are refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from mocpy import MOC

from nightjar.catalogs import watchmap
from nightjar.catalogs.watchmap import WatchmapError


def test_real_files(data_dir: Path) -> None:
    nuniq, kind = watchmap.from_file(data_dir / "mocs" / "CDS-I-125A-catalog_MOC.fits")
    assert kind == "moc" and nuniq.max_order == 8
    ranges, kind = watchmap.from_file(data_dir / "mocs" / "polygon_moc.fits")
    assert kind == "moc" and ranges.max_order == 9
    for level in (0.5, 0.9):
        region, kind = watchmap.from_file(data_dir / "skymaps" / "bayestar.multiorder.fits", level)
        expected = MOC.from_multiordermap_fits_file(
            data_dir / "skymaps" / "bayestar.multiorder.fits", cumul_from=0.0, cumul_to=level
        )
        assert kind == "skymap" and region == expected
    assert (
        watchmap.from_file(data_dir / "skymaps" / "bayestar.multiorder.fits", 0.5)[0].sky_fraction < region.sky_fraction
    )


def test_polygons_and_circles() -> None:
    square = watchmap.from_polygon([(10, -10), (20, -10), (20, 0), (10, 0)], order=10)
    inside = square.contains_lonlat(np.array([15.0, 25.0]) * u.deg, np.array([-5.0, -5.0]) * u.deg)
    assert inside.tolist() == [True, False]
    circle = watchmap.from_circle(359.9, 0.0, 3600, order=12)  # across RA = 0
    got = circle.contains_lonlat(np.array([0.5, 359.5, 1.2]) * u.deg, np.array([0.0, 0.0, 0.0]) * u.deg)
    assert got.tolist() == [True, True, False]
    area = watchmap.AreaIndex.of(circle)
    from nightjar.catalogs.standardize import spatial_index

    assert area.contains(spatial_index(np.array([0.5, 359.5, 1.2]), np.zeros(3))).tolist() == [True, True, False]


def test_bad_areas_are_refused_clearly(tmp_path: Path, data_dir: Path) -> None:
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(image)
    table = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="flux", format="D", array=np.ones(3))]).writeto(table)
    deep = tmp_path / "deep.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="UNIQ", format="K", array=np.array([4 * 4**29 + 5]))])
    hdu.header.update({"PIXTYPE": "HEALPIX", "ORDERING": "NUNIQ", "MOCORDER": 31})
    hdu.writeto(deep)
    empty = tmp_path / "empty.fits"
    MOC.new_empty(10).save(empty, format="fits")
    text = data_dir / "PROVENANCE.md"
    cases = [
        (image, "without a table extension is not a MOC"),
        (table, r"not a MOC \(no MOCORDER/MOCDIM keyword\) nor a HEALPix probability map"),
        (deep, r"MOC order 31 is outside 0\.\.29"),
        (empty, "the area is empty"),
        (text, "not a FITS file"),
        (tmp_path / "missing.fits", "no such file"),
    ]
    for path, message in cases:
        with pytest.raises(WatchmapError, match=message):
            watchmap.from_file(path)
    with pytest.raises(WatchmapError, match="credible level must be in"):
        watchmap.from_file(data_dir / "skymaps" / "bayestar.multiorder.fits", 1.5)
    with pytest.raises(WatchmapError, match="at least 3 vertices"):
        watchmap.from_polygon([(1, 2), (3, 4)])
    with pytest.raises(WatchmapError, match="Dec must be in"):
        watchmap.from_polygon([(1, 2), (3, 4), (5, 95)])
    with pytest.raises(WatchmapError, match=r"order must be in 0\.\.29"):
        watchmap.from_circle(1, 2, 3, order=30)
    with pytest.raises(WatchmapError, match="radius must be > 0"):
        watchmap.from_circle(1, 2, 0)
