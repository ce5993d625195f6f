"""Galactic latitude and SFD reddening against astropy and a direct lookup in the shipped HEALPix map."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Galactic, SkyCoord
from astropy.io import fits
from astropy_healpix import HEALPix

from nightjar.catalogs.dust import ebv_sfd, galactic, sfd_map_path


def test_galactic_latitude_equals_astropy() -> None:
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    lon, lat = galactic(ra, dec)
    expected = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic
    assert np.max(np.abs(lat - expected.b.deg)) < 1e-5  # < 0.04 arcsec (FK5 vs ICRS frame bias)
    assert np.max(np.abs(((lon - expected.l.deg + 180) % 360) - 180) * np.cos(np.radians(lat))) < 1e-5


def test_ebv_equals_a_direct_map_lookup() -> None:
    with fits.open(sfd_map_path()) as hdus:
        values = np.asarray(hdus[1].data.field(0), np.float64).ravel()
        nside, order = hdus[1].header["NSIDE"], hdus[1].header["ORDERING"].strip().lower()
    assert nside == 64 and len(values) == 12 * 64**2
    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    coords = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    hp = HEALPix(nside=nside, order=order, frame=Galactic())
    expected = hp.interpolate_bilinear_skycoord(coords, values)
    assert ebv_sfd(ra, dec) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # at a pixel centre the value is the pixel's own
    centre = hp.healpix_to_skycoord(np.arange(0, len(values), 997)).icrs
    at_centres = ebv_sfd(centre.ra.deg, centre.dec.deg)
    assert at_centres == pytest.approx(values[::997], rel=1e-4, abs=1e-6)


def test_known_sky_reddening_and_missing_positions() -> None:
    # The LSSTCam alerts' field (RA 7.5, Dec -44.3, high latitude) is clear; the Galactic centre is not.
    clear, centre, missing = ebv_sfd(np.array([7.5, 266.4, np.nan]), np.array([-44.3, -28.9, 0.0]))
    assert 0.0 < clear < 0.03 and centre > 5 and np.isnan(missing)
