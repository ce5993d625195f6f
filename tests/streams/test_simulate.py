"""The simulator's alerts are valid, deterministic and match the truth it writes."""

from __future__ import annotations

import io

import astropy.units as u
import fastavro
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from nightjar.streams import lightcurves, schemas, sky, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimConfig, Simulation

from ..fastavro_reference import assert_decoded_as_fastavro, fastavro_record


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
        record = fastavro_record(alert.payload)
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
        record = fastavro_record(alert.payload)
        forced.append(len(record["prvDiaForcedSources"] or []))
    # A forced measurement every three days for a year.
    assert float(np.median(forced)) >= 100


@pytest.fixture(scope="module")
def heavy() -> list:
    config = SimConfig(history_days=365, cutout_size=80)
    return list(Simulation(300, seed=13, config=config).alerts())


def test_heavy_alerts_read_the_same_with_fastavro_and_the_columnar_decoder(heavy) -> None:
    sample = [a.payload for a in heavy[::5]]
    out = decode_batch(RawBatch.from_payloads(sample))
    assert out.rejects == []
    assert_decoded_as_fastavro(out, [fastavro_record(p) for p in sample])


def test_heavy_alerts_are_canonical_avro(heavy) -> None:
    """fastavro writes back exactly the bytes the simulator's own encoder wrote."""
    for alert in heavy[::25]:
        sid, body = wire.unframe(alert.payload)
        again = io.BytesIO()
        fastavro.schemaless_writer(again, schemas.lsst_schema(sid), fastavro_record(alert.payload))
        assert again.getvalue() == bytes(body)


def test_heavy_alerts_are_consistent(heavy) -> None:
    ids: set[int] = set()
    for alert in heavy:
        record = fastavro_record(alert.payload)
        source = record["diaSource"]
        assert record["diaSourceId"] == source["diaSourceId"] == alert.dia_source_id
        assert source["diaObjectId"] == alert.dia_object_id
        history = record["prvDiaSources"] or []
        forced = record["prvDiaForcedSources"] or []
        for rows in (history, forced):
            mjd = [r["midpointMjdTai"] for r in rows]
            assert mjd == sorted(mjd)
            assert all(source["midpointMjdTai"] - 365 <= t < source["midpointMjdTai"] for t in mjd)
        ids.update(r["diaForcedSourceId"] for r in forced)
        obj = record["diaObject"]
        if obj is None:
            assert alert.dia_object_id is None and not history
            continue
        everything = [*history, source]
        assert obj["nDiaSources"] == len(everything)
        assert obj["firstDiaSourceMjdTai"] == everything[0]["midpointMjdTai"]
        for band in "ugrizy":
            fluxes = [s["psfFlux"] for s in everything if s["band"] == band]
            assert obj[f"{band}_psfFluxNdata"] == len(fluxes)
            if fluxes:
                assert obj[f"{band}_psfFluxMean"] == pytest.approx(np.mean(fluxes), rel=1e-6, abs=1e-3)
                assert obj[f"{band}_psfFluxMax"] == pytest.approx(max(fluxes), rel=1e-6)
            else:
                assert obj[f"{band}_psfFluxMean"] is None
    # Forced photometry ids are unique per measurement (an object's alerts repeat the same history rows).
    assert len(ids) > len(heavy)


def test_cutouts_are_fits_images_of_a_point_source(heavy) -> None:
    record = fastavro_record(heavy[0].payload)
    flux = record["diaSource"]["psfFlux"]
    with fits.open(io.BytesIO(record["cutoutScience"])) as hdus:
        image = hdus[0].data
    assert image.shape == (80, 80)
    y, x = np.mgrid[38:42, 38:42] - 39.5
    psf = np.exp(-(x**2 + y**2) / 4.0).mean()
    assert image[38:42, 38:42].mean() == pytest.approx((flux + 1000.0) / 20 * psf, abs=60)
    assert 40 < image[:20].std() < 60  # the noise, far from the source


def test_vectorised_light_curves_equal_the_scalar_models() -> None:
    rng = np.random.default_rng(3)
    models = [lightcurves.draw(c, 60950.0, 10, rng) for c in lightcurves.CLASSES for _ in range(5)]
    which = rng.integers(0, len(models), 2000)
    mjd = rng.uniform(60950.0 - 400, 60965.0, 2000)
    bands = rng.choice(list(lightcurves.BAND_COLOUR), 2000)
    colour = np.array([lightcurves.BAND_COLOUR[b] for b in bands])
    got = lightcurves.fluxes(models, which, mjd, colour)
    expected = [lightcurves.flux(models[w], t, b) for w, t, b in zip(which, mjd, bands, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
