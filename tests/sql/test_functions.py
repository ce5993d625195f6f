"""The helper functions give the astronomers' answers (checked against astropy and healpy)."""

from __future__ import annotations

import time

import healpy as hp
import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time

from nightjar.sql import sandbox, views

LIMITS = sandbox.Limits(timeout_s=10)


@pytest.fixture
def box():
    rng = np.random.default_rng(3)
    n = 200
    positions = pa.table(
        {
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "ra2": rng.uniform(0, 360, n),
            "dec2": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        }
    )
    made = sandbox.connect(views.with_placeholders({"positions": positions}), LIMITS)
    yield made, positions
    made.close()


def one(box: sandbox.Sandbox, sql: str) -> object:
    return sandbox.run(box, sql, LIMITS).to_pylist()[0]["v"]


def test_magnitudes(box) -> None:
    con, _ = box
    assert one(con, "SELECT mag(3631e9) AS v") == pytest.approx(31.4 - 2.5 * np.log10(3631e9))
    assert one(con, "SELECT mag(1e4) AS v") == pytest.approx(21.4)
    assert one(con, "SELECT mag(-5.0) AS v") is None  # a negative difference flux has no magnitude
    assert one(con, "SELECT mag_err(1000.0, 100.0) AS v") == pytest.approx(2.5 / np.log(10) * 0.1)
    assert one(con, "SELECT flux_njy(mag(12345.0)) AS v") == pytest.approx(12345.0)


def test_current_mjd() -> None:
    made = sandbox.connect(views.with_placeholders({}), LIMITS)
    try:
        before = Time(time.time(), format="unix").mjd
        value = sandbox.run(made, "SELECT mjdnow() AS v", LIMITS)["v"][0].as_py()
        after = Time(time.time(), format="unix").mjd
        assert before - 1e-6 <= value <= after + 1e-6
        stamp = sandbox.run(made, "SELECT mjd_to_timestamp(60924.5) AS v", LIMITS)["v"][0].as_py()
        assert stamp.isoformat() == Time(60924.5, format="mjd").to_datetime().isoformat()
    finally:
        made.close()


def test_angular_separation_and_cones_match_astropy(box) -> None:
    con, positions = box
    got = sandbox.run(con, "SELECT angsep(ra, dec, ra2, dec2) AS v FROM positions", LIMITS)["v"].to_numpy()
    a = SkyCoord(positions["ra"].to_numpy() * u.deg, positions["dec"].to_numpy() * u.deg)
    b = SkyCoord(positions["ra2"].to_numpy() * u.deg, positions["dec2"].to_numpy() * u.deg)
    np.testing.assert_allclose(got, a.separation(b).arcsec, rtol=1e-9, atol=1e-6)
    assert one(con, "SELECT angsep(10, 20, 10, 21) AS v") == pytest.approx(3600.0)
    # A cone of 2 arcsec around one point holds exactly the points closer than that (here: itself).
    inside = sandbox.run(
        con, "SELECT count(*) AS n FROM positions p, positions q WHERE in_cone(p.ra, p.dec, q.ra, q.dec, 2)", LIMITS
    )
    assert inside["n"].to_pylist() == [positions.num_rows]
    assert one(con, "SELECT in_cone(10.0, 20.0, 10.0, 20.0 + 1.9 / 3600, 2) AS v") is True
    assert one(con, "SELECT in_cone(10.0, 20.0, 10.0, 20.0 + 2.1 / 3600, 2) AS v") is False


def test_healpix_matches_healpy(box) -> None:
    con, positions = box
    for order in (0, 5, 12, 29):
        got = sandbox.run(con, f"SELECT healpix(ra, dec, {order}) AS v FROM positions", LIMITS)["v"].to_numpy()
        want = hp.ang2pix(1 << order, positions["ra"].to_numpy(), positions["dec"].to_numpy(), nest=True, lonlat=True)
        np.testing.assert_array_equal(got, want)
    assert one(con, "SELECT healpix(10.0, 95.0, 5) AS v") is None  # no such declination
    assert one(con, "SELECT healpix(10.0, 20.0, 30) AS v") is None  # beyond order 29
