"""Lasair-LSST features against independent computations (NumPy, SciPy, astropy) on real ZTF light curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM
from scipy.optimize import brentq

from nightjar.pipelines.blackbody import EXTINCTION_R, WAVELENGTH_UM
from nightjar.pipelines.features import object_features
from tests.pipelines.real_curves import ztf_detections

HC_K = 14387.7688  # µm·K


@pytest.fixture(scope="module")
def detections(data_dir: Path) -> pa.Table:
    return ztf_detections(data_dir)


def _curves(detections: pa.Table) -> dict[int, dict[str, np.ndarray]]:
    d = detections.to_pydict()
    out: dict[int, dict[str, list]] = {}
    for i, obj in enumerate(d["diaObjectId"]):
        c = out.setdefault(obj, {k: [] for k in ("t", "band", "f", "e", "rel")})
        for key, col in (("t", "midpointMjdTai"), ("band", "band"), ("f", "psfFlux"), ("e", "psfFluxErr")):
            c[key].append(d[col][i])
        c["rel"].append(d["reliability"][i])
    return {k: {n: np.array(v) for n, v in c.items()} for k, c in out.items()}


def _temperature(ratio: float, blue: float, red: float) -> float | None:
    """Blackbody temperature (kK) by SciPy's root finder: B_nu(blue)/B_nu(red) = ratio."""

    def excess(t_kk: float) -> float:
        b = blue**-3 / math.expm1(HC_K / 1000 / (blue * t_kk))
        r = red**-3 / math.expm1(HC_K / 1000 / (red * t_kk))
        return b / r - ratio

    if not (excess(0.3) < 0 < excess(1000.0)):
        return None
    return float(brentq(excess, 0.3, 1000.0, xtol=1e-10))


def test_counts_jumps_and_pair_colours_equal_an_independent_computation(detections: pa.Table) -> None:
    ebv = 0.05  # one reddening for every object, so that the correction is exercised
    ids = np.unique(detections["diaObjectId"].to_numpy())
    sky = pa.table(
        {
            "diaObjectId": pa.array(ids, pa.int64()),
            "ebv": pa.array(np.full(len(ids), ebv)),
            "distance": pa.nulls(len(ids), pa.float64()),
        }
    )
    rows = {r["diaObjectId"]: r for r in object_features(detections, sky).to_pylist()}
    curves = _curves(detections)
    assert set(rows) == set(curves)
    jumps = pairs = 0
    for obj, c in curves.items():
        row = rows[obj]
        t, band, f = c["t"], c["band"], c["f"]
        assert row["nSourcesGood"] == int(np.sum(np.array([r is not None and r > 0.5 for r in c["rel"]])))
        assert row["nPosDiaSources"] == int(np.sum(f > 0))
        assert row["nPosDiaSourcesNights"] == len({math.floor(x - 0.5) for x in t[f > 0]})
        # jump1/jump2: per band, the largest |flux - mean| / sd of the last 10 days against the same band's
        # detections 10 to 70 days before the newest (at least 5 of them); the two largest bands
        last = t.max()
        by_band = {}
        for b in set(band):
            base = f[(band == b) & (t >= last - 70) & (t < last - 10)]
            recent = f[(band == b) & (t >= last - 10)]
            if len(base) >= 5 and len(recent) and base.std(ddof=1) > 0:
                by_band[b] = float(np.max(np.abs(recent - base.mean()) / base.std(ddof=1)))
        ranked = sorted(by_band.items(), key=lambda kv: (-kv[1], kv[0]))
        expected = [v for _, v in ranked] + [None, None]
        for got, want in zip((row["jump1"], row["jump2"]), expected[:2], strict=True):
            if want is None:
                assert got is None
            else:
                assert got == pytest.approx(want, rel=1e-9)
                jumps += 1
        # pair colours: consecutive detections in different bands within 40 minutes, both positive; the newest
        # two such pairs, extinction-corrected
        order = np.lexsort((f, [list(WAVELENGTH_UM).index(b) for b in band], t))
        ts, bs, fs = t[order], band[order], f[order]
        found = []
        for i in range(len(ts) - 1, 0, -1):
            if bs[i] != bs[i - 1] and (ts[i] - ts[i - 1]) * 1440 < 40 and fs[i] > 0 and fs[i - 1] > 0:
                found.append(i)
        for prefix, k in (("latestPair", 0), ("penultimatePair", 1)):
            if k >= len(found):
                assert row[f"{prefix}MJD"] is None
                continue
            i = found[k]
            (b1, f1), (b2, f2) = sorted(
                [(bs[i], fs[i]), (bs[i - 1], fs[i - 1])], key=lambda p: WAVELENGTH_UM[str(p[0])]
            )
            ec1 = f1 * 10 ** (0.4 * EXTINCTION_R[str(b1)] * ebv)
            ec2 = f2 * 10 ** (0.4 * EXTINCTION_R[str(b2)] * ebv)
            assert row[f"{prefix}MJD"] == pytest.approx(ts[i], abs=1e-9)
            assert row[f"{prefix}ColourBands"] == f"{b1}-{b2}"
            assert row[f"{prefix}ColourMag"] == pytest.approx(-2.5 * math.log10(ec1 / ec2), abs=1e-9)
            temp = _temperature(ec1 / ec2, WAVELENGTH_UM[str(b1)], WAVELENGTH_UM[str(b2)])
            if temp is None:
                assert row[f"{prefix}ColourTemp"] is None
            else:
                assert row[f"{prefix}ColourTemp"] == pytest.approx(temp, rel=1e-6)
            pairs += 1
    assert jumps >= 10 and pairs >= 20  # the real curves exercise both


def test_absolute_magnitude_from_astropy_cosmology(detections: pa.Table) -> None:
    z = 0.05
    cosmo = FlatLambdaCDM(H0=70 * u.km / u.s / u.Mpc, Om0=0.3)
    distance = float(cosmo.luminosity_distance(z).to_value(u.Mpc))
    ids = np.unique(detections["diaObjectId"].to_numpy())
    hosted = ids[::2]  # every other object has a host at z = 0.05, the others none
    sky = pa.table(
        {
            "diaObjectId": pa.array(ids, pa.int64()),
            "ebv": pa.array(np.full(len(ids), 0.02)),
            "distance": pa.array([distance if i in set(hosted) else None for i in ids], pa.float64()),
        }
    )
    rows = {r["diaObjectId"]: r for r in object_features(detections, sky).to_pylist()}
    modulus = float(cosmo.distmod(z).value)
    for obj, c in _curves(detections).items():
        row = rows[obj]
        positive = c["f"] > 0
        if obj not in set(hosted) or not positive.any():
            assert row["absMag"] is None and row["absMagMJD"] is None
            continue
        ec = c["f"] * 10 ** (0.4 * np.array([EXTINCTION_R[b] for b in c["band"]]) * 0.02)
        brightest = int(np.argmax(np.where(positive, ec, -np.inf)))
        assert row["absMag"] == pytest.approx(31.4 - 2.5 * math.log10(ec[brightest]) - modulus, abs=1e-4)
        assert row["absMagMJD"] == pytest.approx(c["t"][brightest], abs=1e-9)


def test_per_band_light_curve_features_equal_numpy(detections: pa.Table) -> None:
    rows = {r["diaObjectId"]: r for r in object_features(detections).to_pylist()}
    checked = 0
    for obj, c in _curves(detections).items():
        for b in ("g", "r"):
            sel = c["band"] == b
            t, f, e = c["t"][sel], c["f"][sel], c["e"][sel]
            if len(t) < 2:
                continue
            order = np.lexsort((e, t))  # of detections at the same time, the one with the smallest error
            t, f = t[order], f[order]
            f = f[np.concatenate([[True], np.diff(t) != 0])]
            if len(f) < 2:
                continue
            assert rows[obj][f"{b}_lc_mean"] == pytest.approx(f.mean(), rel=1e-9)
            assert rows[obj][f"{b}_lc_amplitude"] == pytest.approx((f.max() - f.min()) / 2, rel=1e-9)
            assert rows[obj][f"{b}_lc_standard_deviation"] == pytest.approx(f.std(ddof=1), rel=1e-6)
            checked += 1
    assert checked >= 50
