from __future__ import annotations

import astropy.units as u
import healpy as hp
import numpy as np
import pyarrow as pa
from astropy.coordinates import SkyCoord

from nightjar.pipelines.healpix import add_healpix, add_night


def test_indices_agree_with_healpy_at_every_order() -> None:
    rng = np.random.default_rng(0)
    ra = rng.uniform(0, 360, 1000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 1000)))
    table = add_healpix(pa.table({"ra": ra, "dec": dec}), partition_order=5)
    assert table["hpx29"].type == pa.int64()
    coarse = hp.ang2pix(2**5, ra, dec, nest=True, lonlat=True)
    assert np.array_equal(table["hpx_part"].to_numpy(), coarse)
    # The order-29 pixel's centre lies within a few milliarcseconds of the position.
    lon, lat = hp.pix2ang(2**29, table["hpx29"].to_numpy(), nest=True, lonlat=True)
    sep = SkyCoord(lon * u.deg, lat * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec
    assert (sep < 0.001).all()


def test_night_is_the_integer_mjd() -> None:
    table = add_night(pa.table({"midpointMjdTai": [60950.01, 60950.99, 60951.2]}))
    assert table["night"].to_pylist() == [60950, 60950, 60951]
