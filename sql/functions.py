"""Functions astronomers need in filters: magnitudes, the current MJD, angular separation, cone tests, HEALPix.

They are SQL macros (plus one vectorised Arrow function for HEALPix) created on every user connection before
the configuration is locked, so a query that runs over the lake runs unchanged as a streaming filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths

# AB magnitude of a flux in nJy: m = 31.4 - 2.5 log10(f / nJy); 2.5 / ln(10) turns a relative flux error into mag.
AB_ZERO_POINT_NJY = 31.4
MAG_ERR_FACTOR = 1.0857362047581294
MJD_UNIX_EPOCH = 40587.0  # MJD of 1970-01-01T00:00:00 UTC


@dataclass(frozen=True)
class Function:
    """One helper: its call signature, what it returns, and the SQL macro body (None for Python functions)."""

    name: str
    signature: str
    description: str
    body: str | None = None


FUNCTIONS: tuple[Function, ...] = (
    Function(
        "mag",
        "mag(flux_njy)",
        "AB magnitude of a flux in nJy (31.4 - 2.5 log10 flux); NULL for flux <= 0",
        f"CASE WHEN flux_njy > 0 THEN {AB_ZERO_POINT_NJY} - 2.5 * log10(flux_njy) END",
    ),
    Function(
        "mag_err",
        "mag_err(flux_njy, flux_err_njy)",
        "magnitude error from a flux and its error (1.0857 err / |flux|)",
        f"CASE WHEN flux_njy <> 0 THEN CAST({MAG_ERR_FACTOR} AS DOUBLE) * flux_err_njy / abs(flux_njy) END",
    ),
    Function(
        "flux_njy",
        "flux_njy(mag)",
        "flux in nJy of an AB magnitude",
        f"pow(10, ({AB_ZERO_POINT_NJY} - mag) / 2.5)",
    ),
    Function(
        "mjdnow",
        "mjdnow()",
        "the current Modified Julian Date (UTC)",
        f"epoch_ms(get_current_timestamp()) / 86400000.0 + {MJD_UNIX_EPOCH}",
    ),
    Function(
        "mjd_to_timestamp",
        "mjd_to_timestamp(mjd)",
        "the UTC timestamp of an MJD",
        f"make_timestamp(CAST(round((mjd - {MJD_UNIX_EPOCH}) * 86400000000) AS BIGINT))",
    ),
    Function(
        "angsep",
        "angsep(ra1, dec1, ra2, dec2)",
        "angular separation in arcseconds of two positions in degrees (haversine)",
        "3600.0 * degrees(2 * asin(least(1.0, sqrt("
        "pow(sin(radians(dec2 - dec1) / 2), 2)"
        " + cos(radians(dec1)) * cos(radians(dec2)) * pow(sin(radians(ra2 - ra1) / 2), 2)))))",
    ),
    Function(
        "in_cone",
        "in_cone(ra, dec, ra0, dec0, radius_arcsec)",
        "true when (ra, dec) lies within radius_arcsec of (ra0, dec0); all angles in degrees except the radius",
        # The declination band is cheap and CASE evaluates the separation only inside it.
        "CASE WHEN abs(dec - dec0) > radius_arcsec / 3600.0 THEN false "
        "ELSE angsep(ra, dec, ra0, dec0) <= radius_arcsec END",
    ),
    Function(
        "healpix",
        "healpix(ra, dec, order)",
        f"nested HEALPix index of a position at an order from 0 to {paths.HPX_ORDER_MAX}; "
        "the lake's hpx29 column is healpix(ra, dec, 29)",
    ),
)

_MACRO_ARGS = {
    "mag": "flux_njy",
    "mag_err": "flux_njy, flux_err_njy",
    "flux_njy": "mag",
    "mjdnow": "",
    "mjd_to_timestamp": "mjd",
    "angsep": "ra1, dec1, ra2, dec2",
    "in_cone": "ra, dec, ra0, dec0, radius_arcsec",
}


def _healpix(ra: pa.Array, dec: pa.Array, order: pa.Array) -> pa.Array:
    """Vectorised nested HEALPix index; NULL where the position or the order is out of range."""
    ra_np = pc.fill_null(pc.cast(ra, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    dec_np = pc.fill_null(pc.cast(dec, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    order_np = pc.fill_null(pc.cast(order, pa.int64()), -1).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        good = (
            np.isfinite(ra_np)
            & np.isfinite(dec_np)
            & (np.abs(dec_np) <= 90)
            & (order_np >= 0)
            & (order_np <= paths.HPX_ORDER_MAX)
        )
    out = np.zeros(len(ra_np), dtype=np.int64)
    if good.any():
        nside = np.left_shift(1, order_np[good])
        out[good] = hp.ang2pix(nside, np.mod(ra_np[good], 360.0), dec_np[good], nest=True, lonlat=True)
    return pa.array(out, pa.int64(), mask=~good)


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the helper functions in ``con``'s database (before its configuration is locked).

    The macros live in the database, not the connection, so cursors of ``con`` see them too.
    """
    for fn in FUNCTIONS:
        if fn.body is not None:
            con.execute(f"CREATE OR REPLACE MACRO {fn.name}({_MACRO_ARGS[fn.name]}) AS {fn.body}")
    con.create_function(  # type: ignore[call-overload]  # the stubs do not know Arrow UDFs
        "healpix",
        _healpix,
        [duckdb.sqltype("DOUBLE"), duckdb.sqltype("DOUBLE"), duckdb.sqltype("INTEGER")],
        duckdb.sqltype("BIGINT"),
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
