"""Demo catalogues that need nothing beyond the package index: OpenNGC (from ``pyongc``) and synthetic ones.

``pyongc`` ships the OpenNGC database (``ongc.db``, SQLite, CC-BY-SA 4.0) with its wheel; its galaxies have
sizes (major axis in arcminutes), B magnitudes and redshifts, which is what galaxy association needs.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
from distributed import Client
from rich.console import Console

from nightjar.catalogs.build import BuildSpec, build_catalog
from nightjar.catalogs.catalog import CatalogInfo, ColumnMap
from nightjar.catalogs.rules import Kind
from nightjar.catalogs.synth import synth_catalog
from nightjar.storage import CatalogsHome

GALAXY_TYPES = ["G", "GPair", "GTrpl", "GGroup"]
OPENNGC_COLUMNS = ColumnMap(
    ra="ra_deg",
    dec="dec_deg",
    id="name",
    z="redshift",
    major_axis="majax",
    major_axis_unit="arcmin",
    mag="bmag",
    type="type",
    keep_types=GALAXY_TYPES,
)


def openngc_db() -> Path:
    """The OpenNGC SQLite database shipped in the ``pyongc`` wheel."""
    return Path(str(resources.files("pyongc") / "ongc.db"))


def openngc_table() -> pa.Table:
    """Every OpenNGC object with positions in degrees (the database stores radians)."""
    uri = f"file:{openngc_db()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        cursor = con.execute(
            "SELECT name, type, ra, dec, majax, minax, pa, bmag, vmag, hubble, radvel, redshift, messier,"
            " commonnames FROM objects"
        )
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    columns = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    table = pa.table(columns)
    ra = np.degrees(np.asarray(table["ra"].to_numpy(zero_copy_only=False), dtype=np.float64))
    dec = np.degrees(np.asarray(table["dec"].to_numpy(zero_copy_only=False), dtype=np.float64))
    table = table.drop_columns(["ra", "dec"])
    table = table.append_column("ra_deg", pa.array(ra, mask=~np.isfinite(ra)))
    return table.append_column("dec_deg", pa.array(dec, mask=~np.isfinite(dec)))


def install_openngc(
    client: Client, home: CatalogsHome, name: str = "openngc", console: Console | None = None
) -> CatalogInfo:
    """Import the OpenNGC galaxies from ``pyongc`` as a galaxy catalogue."""
    spec = BuildSpec(
        name=name,
        kind=Kind.GALAXY,
        columns=OPENNGC_COLUMNS,
        description="OpenNGC galaxies (NGC/IC), from pyongc",
        sources=(str(openngc_db()),),
        mag_filter="B",
    )
    return build_catalog(client, [openngc_table()], spec, home, console=console)


def install_demo_catalogs(
    client: Client, home: CatalogsHome, synthetic_rows: int = 200_000, console: Console | None = None
) -> list[CatalogInfo]:
    """The demo set: OpenNGC galaxies plus a synthetic galaxy and a synthetic star catalogue."""
    return [
        install_openngc(client, home, console=console),
        synth_catalog(client, home, "synth-galaxies", synthetic_rows, Kind.GALAXY, seed=1, console=console),
        synth_catalog(client, home, "synth-stars", synthetic_rows, Kind.STAR, seed=2, console=console),
    ]
