"""Where simulated alerts happen: a southern survey footprint denser towards the Galactic plane, and host
galaxies from OpenNGC (the ``pyongc`` package's database, read offline)."""

from __future__ import annotations

import sqlite3

import astropy.units as u
import numpy as np
import pyarrow as pa
from astropy.coordinates import SkyCoord

DEC_MIN, DEC_MAX = -75.0, 10.0
GALACTIC_SCALE_DEG = 15.0
GALAXY_TYPES = ("G", "GPair", "GTrpl", "GGroup")


def footprint(n: int, rng: np.random.Generator, plane_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions (deg) in the footprint; density rises by ``1 + plane_weight`` towards |b| = 0."""
    ra_out: list[np.ndarray] = []
    dec_out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = max(2 * (n - have), 64)
        ra = rng.uniform(0, 360, m)
        dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(DEC_MIN)), np.sin(np.radians(DEC_MAX)), m)))
        b = SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg
        weight = (1 + plane_weight * np.exp(-np.abs(b) / GALACTIC_SCALE_DEG)) / (1 + plane_weight)
        keep = rng.random(m) < weight
        ra_out.append(ra[keep])
        dec_out.append(dec[keep])
        have += int(keep.sum())
    return np.concatenate(ra_out)[:n], np.concatenate(dec_out)[:n]


def openngc_galaxies() -> pa.Table:
    """OpenNGC galaxies with a size: name, ra, dec (deg), semi-major axis (arcsec) and redshift (may be null)."""
    from pyongc import ongc

    with sqlite3.connect(f"file:{ongc.DBPATH}?mode=ro", uri=True) as con:
        rows = con.execute(
            f"SELECT name, ra, dec, majax, redshift FROM objects WHERE type IN ({','.join('?' * len(GALAXY_TYPES))})"
            " AND majax > 0 AND ra IS NOT NULL AND dec IS NOT NULL",
            GALAXY_TYPES,
        ).fetchall()
    names, ra, dec, majax, z = zip(*rows, strict=True)
    # The database keeps coordinates in radians and axes in arcminutes.
    return pa.table(
        {
            "name": pa.array(names, pa.string()),
            "ra": pa.array(np.degrees(np.asarray(ra, dtype=float))),
            "dec": pa.array(np.degrees(np.asarray(dec, dtype=float))),
            "semi_major_arcsec": pa.array(np.asarray(majax, dtype=float) * 30.0),
            "redshift": pa.array(z, pa.float64()),
        }
    )


def offset_position(
    ra: np.ndarray, dec: np.ndarray, separation_arcsec: np.ndarray, position_angle_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions at the given separations and position angles (east of north) from (ra, dec)."""
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    moved = centre.directional_offset_by(position_angle_deg * u.deg, separation_arcsec * u.arcsec)
    return moved.ra.wrap_at(360 * u.deg).deg, moved.dec.deg
