"""Angles on the sky, vectorised: separations and north/east offsets (degrees in, arcseconds out)."""

from __future__ import annotations

import numpy as np

RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0


def separation_arcsec(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray | float, dec2: np.ndarray | float
) -> np.ndarray:
    """Great-circle separation in arcsec (haversine: accurate at small angles).

    Examples
    --------
    >>> float(separation_arcsec(np.array([10.0]), np.array([0.0]), np.array([10.0]), np.array([1.0]))[0])
    3600.0
    """
    d1, d2 = np.radians(dec1), np.radians(dec2)
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin(np.radians(ra2 - ra1) / 2) ** 2
    return 2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) * RAD_TO_ARCSEC


def offsets_arcsec(ra0: np.ndarray, dec0: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(north, east) offsets in arcsec of positions ``ra, dec`` from reference positions ``ra0, dec0``.

    The offsets are the latitude and longitude of the position in a frame rotated so that the reference is at
    the origin with north up (astropy's ``SkyOffsetFrame``, as ``SkyCoord.spherical_offsets_to``).
    """
    a0, d0 = np.radians(ra0), np.radians(dec0)
    a, d = np.radians(ra), np.radians(dec)
    dra = a - a0
    north = np.arcsin(np.clip(np.sin(d) * np.cos(d0) - np.cos(d) * np.sin(d0) * np.cos(dra), -1.0, 1.0))
    east = np.arctan2(np.cos(d) * np.sin(dra), np.sin(d) * np.sin(d0) + np.cos(d) * np.cos(d0) * np.cos(dra))
    return north * RAD_TO_ARCSEC, east * RAD_TO_ARCSEC
