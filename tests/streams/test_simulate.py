"""The simulator's alerts are valid, deterministic and match the truth it writes."""

from __future__ import annotations

import io

import astropy.units as u
import fastavro
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from nightjar.streams import lightcurves, schemas, sky, wire
from nightjar.streams.simulate import SimConfig, Simulation


@pytest.fixture(scope="module")
def simulation() -> tuple[Simulation, list]:
    sim = Simulation(1500, seed=21)
    return sim, list(sim.alerts())


def test_same_seed_same_alerts() -> None:
    first = [a.payload for a in Simulation(60, seed=4).alerts()]
    again = [a.payload for a in Simulation(60, seed=4).alerts()]
    other = [a.payload for a in Simulation(60, seed=5).alerts()]
    assert first == again
    assert first != other


def test_every_class_appears_and_solar_system_alerts_have_no_object(simulation) -> None:
    sim, alerts = simulation
    truth = sim.truth()
    assert set(truth["class"].to_pylist()) == set(lightcurves.CLASSES)
    sso = {r["ssObjectId"] for r in truth.to_pylist() if r["class"] == "SSO"}
    for alert in alerts:
        sid, body = wire.unframe(alert.payload)
        record = fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)
        assert isinstance(record, dict)
        if record["diaSource"]["ssObjectId"] in sso:
            assert record["diaObject"] is None and record["diaSource"]["diaObjectId"] is None
        else:
            assert record["diaObject"]["diaObjectId"] == record["diaSource"]["diaObjectId"]


def test_hosted_transients_sit_at_their_recorded_offsets(simulation) -> None:
    sim, _ = simulation
    truth = sim.truth().to_pylist()
    hosted = [r for r in truth if r["host"] is not None]
    assert len(hosted) > 20
    assert {r["class"] for r in hosted} <= {"SNIa", "SNII", "NT"}
    galaxies = sky.openngc_galaxies().to_pylist()
    by_name = {g["name"]: g for g in galaxies}
    for row in hosted:
        galaxy = by_name[row["host"]]
        sep = SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg).separation(
            SkyCoord(galaxy["ra"] * u.deg, galaxy["dec"] * u.deg)
        )
        assert sep.arcsec == pytest.approx(row["host_sep_arcsec"], abs=1e-3)
        if row["class"] == "NT":
            assert row["host_sep_arcsec"] <= 0.2
        else:
            assert row["host_sep_arcsec"] <= 1.5 * galaxy["semi_major_arcsec"] + 1e-6


def test_positions_follow_the_footprint_and_the_galactic_plane(simulation) -> None:
    sim, _ = simulation
    truth = sim.truth()
    unhosted = np.array([h is None for h in truth["host"].to_pylist()])
    ra, dec = truth["ra"].to_numpy()[unhosted], truth["dec"].to_numpy()[unhosted]
    assert (dec >= sky.DEC_MIN).all() and (dec <= sky.DEC_MAX).all()
    b = np.abs(SkyCoord(ra * u.deg, dec * u.deg).galactic.b.deg)
    # The plane (|b| < 15°) covers ~26% of the sky; the density weighting puts clearly more objects there.
    assert (b < 15).mean() > 0.30


def test_a_year_of_history_gives_rubin_sized_alerts() -> None:
    alerts = list(Simulation(40, seed=9, config=SimConfig(history_days=365, cutout_size=80, hosts=False)).alerts())
    sizes = [len(a.payload) / 1024 for a in alerts]
    assert 80 <= float(np.median(sizes)) <= 130
    forced = []
    for alert in alerts:
        if alert.dia_object_id is None:
            continue
        sid, body = wire.unframe(alert.payload)
        record = fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)
        assert isinstance(record, dict)
        forced.append(len(record["prvDiaForcedSources"] or []))
    # A forced measurement every three days for a year.
    assert float(np.median(forced)) >= 100
