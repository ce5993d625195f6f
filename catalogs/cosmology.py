"""Distances from redshift with astropy.cosmology, vectorised for whole catalogue columns.

astropy integrates the distance for every value it is given; a catalogue partition holds up to millions of
redshifts, so the distances are tabulated once per cosmology on a fine grid and interpolated (relative error
below 1e-5 for 0 < z < 10).
"""

from __future__ import annotations

import functools

import numpy as np
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM

ARCSEC_PER_RADIAN = 206_264.80624709636
Z_MAX = 10.0
_GRID = np.concatenate([[0.0], np.geomspace(1e-6, Z_MAX, 6000)])


@functools.cache
def _tables(h0: float, om0: float) -> tuple[np.ndarray, np.ndarray]:
    """Angular-diameter and luminosity distances (Mpc) on the redshift grid."""
    cosmo = FlatLambdaCDM(H0=h0 * u.km / u.s / u.Mpc, Om0=om0)
    d_a = cosmo.angular_diameter_distance(_GRID).to_value(u.Mpc)
    d_l = cosmo.luminosity_distance(_GRID).to_value(u.Mpc)
    return np.asarray(d_a), np.asarray(d_l)


def _valid(z: np.ndarray) -> np.ndarray:
    return np.isfinite(z) & (z > 0) & (z <= Z_MAX)


def luminosity_distance_mpc(z: np.ndarray, h0: float = 70.0, om0: float = 0.3) -> np.ndarray:
    """Luminosity distance in Mpc of each redshift; NaN where ``z`` is missing, not positive or beyond 10.

    Examples
    --------
    >>> round(float(luminosity_distance_mpc(np.array([0.1]))[0]), 1)  # astropy FlatLambdaCDM(70, 0.3): 460.30 Mpc
    460.3
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.full(z.shape, np.nan)
    ok = _valid(z)
    out[ok] = np.interp(z[ok], _GRID, _tables(h0, om0)[1])
    return out


def scale_kpc_per_arcsec(z: np.ndarray, h0: float = 70.0, om0: float = 0.3) -> np.ndarray:
    """Projected kpc per arcsecond at each redshift (angular-diameter distance); NaN where ``z`` is unusable."""
    z = np.asarray(z, dtype=np.float64)
    out = np.full(z.shape, np.nan)
    ok = _valid(z)
    out[ok] = np.interp(z[ok], _GRID, _tables(h0, om0)[0]) * 1000.0 / ARCSEC_PER_RADIAN
    return out


def direct_scale_kpc_per_arcsec(distance_mpc: np.ndarray) -> np.ndarray:
    """Projected kpc per arcsecond of a redshift-independent distance in Mpc; NaN where it is missing."""
    d = np.asarray(distance_mpc, dtype=np.float64)
    return np.where(np.isfinite(d) & (d > 0), d * 1000.0 / ARCSEC_PER_RADIAN, np.nan)
