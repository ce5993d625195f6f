"""The demo's catalogues come from the package index only: OpenNGC as shipped in ``pyongc``."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pyarrow as pa
from distributed import Client

from nightjar.catalogs.catalog import load_catalog_set
from nightjar.catalogs.context import classify
from nightjar.catalogs.demo import GALAXY_TYPES, install_openngc, openngc_db


def test_openngc_from_pyongc(tmp_path: Path, dask_client: Client) -> None:
    with sqlite3.connect(f"file:{openngc_db()}?mode=ro", uri=True) as con:
        marks = ",".join("?" * len(GALAXY_TYPES))
        (expected,) = con.execute(
            f"SELECT count(*) FROM objects WHERE type IN ({marks}) AND ra IS NOT NULL AND dec IS NOT NULL",
            GALAXY_TYPES,
        ).fetchone()
        ra_rad, dec_rad = con.execute("SELECT ra, dec FROM objects WHERE name = 'NGC0224'").fetchone()
    m31_ra, m31_dec = math.degrees(ra_rad), math.degrees(dec_rad)
    info = install_openngc(dask_client, tmp_path)
    assert info.rows == expected > 10_000
    context = classify(
        pa.table({"diaObjectId": [1, 2], "ra": [m31_ra, m31_ra], "dec": [m31_dec, m31_dec + 600 / 3600]}),
        load_catalog_set(tmp_path),
    ).context
    assert context["classification"].to_pylist() == ["NT", "SN"]  # M31's core, then 10′ out in its disc
    assert context["catalogue_object_id"].to_pylist() == ["NGC0224", "NGC0224"]
    assert context["MagFilter"].to_pylist() == ["B", "B"]
