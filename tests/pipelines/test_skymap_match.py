"""Skymap matching at the stage: the real BAYESTAR map's 90 % region holds exactly the alerts mocpy says it does, the
contour is the smallest of 50/90 holding each one, densities (2D and 3D at a host distance) equal a direct healpy
lookup, only alerts after the event and inside the window count; a flat NESTED map built with healpy around the
real LSST alerts (shifted in time into its window) matches them as healpy says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import healpy as hp
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from mocpy import MOC

from nightjar import paths
from nightjar.catalogs.skymap import read_skymap
from nightjar.catalogs.skymap_store import DEFAULT_WINDOW_DAYS, active_specs, add_skymap
from nightjar.pipelines import stages
from nightjar.pipelines.skymap_match import skymap_hits
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads
from nightjar.streams.replay import alert_files

from ..skymap_reference import BAYESTAR, BAYESTAR_MJD, bayestar

CACHE = 1 << 30


def _alerts(ra: np.ndarray, dec: np.ndarray, mjd: np.ndarray) -> pa.Table:
    n = ra.size
    table = pa.table(
        {
            "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 1_000),
            "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 5_000_000),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "midpointMjdTai": pa.array(mjd),
        }
    )
    return alerts_of(table)


def test_bayestar_region_contour_densities_and_window(home: Path, data_dir: Path) -> None:
    ref = bayestar(data_dir)
    info = add_skymap(home, read_skymap(data_dir / BAYESTAR))
    assert info.event_id == "G361581" and info.window_days == DEFAULT_WINDOW_DAYS
    assert info.event_mjd == pytest.approx(BAYESTAR_MJD, abs=1e-6)
    # The areas agree with mocpy's own reading of the file to 0.1 %.
    by_mocpy = MOC.from_multiordermap_fits_file(data_dir / BAYESTAR, cumul_to=0.9).sky_fraction * 41252.96
    assert info.area90_sq_deg == pytest.approx(by_mocpy, rel=1e-3)
    stored = MOC.load(paths.catalogs_dir(home) / paths.skymap_key(info.id) / "moc90.fits", format="fits")
    assert stored == ref.region(90)

    rng = np.random.default_rng(11)
    ra50, dec50 = ref.sample(50, 60, rng)
    ra90, dec90 = ref.sample(90, 120, rng)
    raout, decout = ref.sample(None, 120, rng)
    rand_ra, rand_dec = rng.uniform(0, 360, 200), np.degrees(np.arcsin(rng.uniform(-1, 1, 200)))
    # Positions jittered by up to 2′: some cross the regions' borders.
    ra = np.concatenate([ra50, ra90, raout, rand_ra])
    dec = np.concatenate([dec50, dec90, decout, rand_dec])
    jitter = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(
        rng.uniform(0, 360, ra.size) * u.deg, rng.uniform(0, 120, ra.size) * u.arcsec
    )
    ra, dec = jitter.ra.deg, jitter.dec.deg
    # Times: before the event, inside the 21-day window, just after it.
    mjd = BAYESTAR_MJD + rng.choice([-0.01, 0.001, 3.0, 20.99, 21.01, 40.0], ra.size)
    alerts = _alerts(ra, dec, mjd)

    hits = skymap_hits(alerts, active_specs(home), CACHE)

    timely = (mjd >= BAYESTAR_MJD) & (mjd <= BAYESTAR_MJD + 21.0)
    in90 = ref.inside(90, ra, dec)
    in50 = ref.inside(50, ra, dec)
    expected = np.flatnonzero(in90 & timely)
    assert 60 < expected.size < ra.size // 2
    assert np.any(in90 & ~timely) and np.any(~in90 & timely) and np.any(in50 & timely)
    got = hits.sort_by("diaSourceId")
    assert got["diaSourceId"].to_pylist() == (expected + 5_000_000).tolist()
    assert got["contour"].to_pylist() == np.where(in50[expected], 50, 90).tolist()
    assert np.array_equal(got["probdens2"].to_numpy(), ref.density_at(ra[expected], dec[expected]))
    assert got["probdens3"].null_count == expected.size  # no context: no host distances
    assert set(got["eventId"].to_pylist()) == {"G361581"}
    assert np.allclose(got["daysSinceEvent"].to_numpy(), mjd[expected] - info.event_mjd, atol=0, rtol=0)

    # With host distances from context, probdens3 is ligo.skymap's conditional density at that distance.
    distance = rng.uniform(300, 1500, ra.size)
    context = pa.table({"diaObjectId": alerts["diaObjectId"], "distance": pa.array(distance)})
    with_hosts = skymap_hits(alerts, active_specs(home), CACHE, context).sort_by("diaSourceId")
    want3 = ref.density3d_at(ra[expected], dec[expected], distance[expected])
    assert np.allclose(with_hosts["probdens3"].to_numpy(), want3, rtol=1e-12, atol=0)
    assert np.array_equal(with_hosts["distanceMpc"].to_numpy(), distance[expected])

    # The watch stage carries them beside the watchmaps'.
    batch = hits_of(alerts, WatchSet(skymaps=active_specs(home)))
    assert batch.mma_hits.sort_by("diaSourceId").equals(got)


def test_window_days_and_event_time_given(home: Path, data_dir: Path) -> None:
    ref = bayestar(data_dir)
    start = datetime(2025, 5, 4, 12, 0, tzinfo=UTC)
    info = add_skymap(
        home,
        read_skymap(data_dir / BAYESTAR),
        event_id="S250504x",
        event_time=start,
        window_days=2.5,
        classification={"BNS": 0.9, "Terrestrial": 0.1},
    )
    t0 = float(Time(start).mjd)
    assert info.event_mjd == pytest.approx(t0, abs=1e-9) and info.classification == {"BNS": 0.9, "Terrestrial": 0.1}
    ra, dec = ref.sample(90, 30, np.random.default_rng(3))
    mjd = t0 + np.linspace(-1.0, 4.0, 30)
    hits = skymap_hits(_alerts(ra, dec, mjd), active_specs(home), CACHE)
    want = (mjd >= t0) & (mjd <= t0 + 2.5) & ref.inside(90, ra, dec)
    assert sorted(hits["diaSourceId"].to_pylist()) == (np.flatnonzero(want) + 5_000_000).tolist()
    assert 5 < want.sum() < 30


def _flat_map(path: Path, ra0: float, dec0: float, nside: int = 64, ring: bool = False) -> np.ndarray:
    """A Gaussian localisation of 1° around (ra0, dec0), normalised, written by healpy; returns the NESTED map."""
    vec = hp.ang2vec(ra0, dec0, lonlat=True)
    xyz = np.array(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)), nest=True))
    angle = np.degrees(np.arccos(np.clip(vec @ xyz, -1, 1)))
    prob = np.exp(-0.5 * (angle / 1.0) ** 2)
    prob /= prob.sum()
    written = hp.reorder(prob, n2r=True) if ring else prob
    hp.write_map(path, written, nest=not ring, column_names=["PROB"], overwrite=True, dtype=np.float64)
    return prob


@pytest.mark.parametrize("ring", [False, True])
def test_flat_map_on_real_alerts_shifted_in_time(home: Path, data_dir: Path, tmp_path: Path, ring: bool) -> None:
    payloads = []
    for path in alert_files([data_dir / "alerts" / "lsst" / "lsstcam-2025-v9.0"]):
        payloads.extend(read_payloads(path))
    batch = stages.locate(decode_batch(RawBatch.from_payloads(payloads)), partition_order=5)
    real = alerts_of(batch.sources)
    ra, dec = real["ra"].to_numpy(), real["dec"].to_numpy()
    # The map is centred 1.5° from the alerts' mean position: part of them fall in its 50 % and 90 % regions.
    centre = SkyCoord(ra.mean() * u.deg, dec.mean() * u.deg).directional_offset_by(0 * u.deg, 1.5 * u.deg)
    prob = _flat_map(tmp_path / "flat.fits", centre.ra.deg, centre.dec.deg, ring=ring)
    skymap = read_skymap(tmp_path / "flat.fits")
    assert skymap.ordering == ("RING" if ring else "NESTED") and not skymap.has_distance
    # The real alerts were observed at MJD ~60924; the event is put 2 days before them.
    event = Time(float(real["midpointMjdTai"].to_numpy().min()) - 2.0, format="mjd").to_datetime(timezone=UTC)
    add_skymap(home, skymap, event_id="GRB-test", event_time=event)
    hits = skymap_hits(real, active_specs(home), CACHE).sort_by("diaSourceId")

    # Independent: mocpy regions from the healpy map, densities straight from the pixel holding each alert.
    order = 6
    uniq = (4 * 4**order + np.arange(prob.size)).astype(np.uint64)
    in90 = MOC.from_valued_healpix_cells(uniq, prob, max_depth=order, cumul_to=0.9).contains_lonlat(
        ra * u.deg, dec * u.deg
    )
    in50 = MOC.from_valued_healpix_cells(uniq, prob, max_depth=order, cumul_to=0.5).contains_lonlat(
        ra * u.deg, dec * u.deg
    )
    assert 0 < in50.sum() < in90.sum() < ra.size
    ids = real["diaSourceId"].to_numpy()
    order_ids = np.argsort(ids[in90])
    assert hits["diaSourceId"].to_pylist() == ids[in90][order_ids].tolist()
    pix = hp.ang2pix(64, ra[in90], dec[in90], nest=True, lonlat=True)
    density = prob[pix] / hp.nside2pixarea(64)
    assert np.allclose(hits["probdens2"].to_numpy(), density[order_ids], rtol=1e-12, atol=0)
    assert hits["contour"].to_pylist() == np.where(in50[in90], 50, 90)[order_ids].tolist()
