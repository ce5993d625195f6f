"""Bazin fits of each object's light curve per band, and Lasair-LSST's ``BBB*`` columns from them.

``light-curve``'s BazinFit (f(t) = A·e^(−(t−t0)/τ_fall) / (1 + e^(−(t−t0)/τ_rise)) + B, weighted least squares) runs
over every (object, band) curve of the batch with at least ``MIN_POINTS`` detections in one batched call (Rust, no
per-row Python). Fluxes are corrected for Milky Way extinction first (``ebv`` of the object).

Lasair fits one Bazin-in-time × blackbody-in-wavelength model to all bands at once; Nightjar fits each band and
combines them (docs/features.md): the rise and fall rates, peak time and peak flux are those of the best-sampled
band's fit (most detections; ties: the redder band), and ``BBBTemp`` is the blackbody temperature whose flux ratio
equals the ratio of two fitted bands' model fluxes at that peak time (the best-sampled band and the next).
"""

from __future__ import annotations

import functools
import itertools

import light_curve as lc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.pipelines.blackbody import EXTINCTION_R, WAVELENGTH_UM, temperature_kk
from nightjar.pipelines.extractors import evaluate

MIN_POINTS = 6  # BazinFit's minimum
# A Bazin function describes one event (a supernova rises and fades within ~100 days): the fit reads the detections
# of the last 100 days before the object's newest, not its 12-month history.
WINDOW_DAYS = 100.0
# Levenberg–Marquardt from light-curve's own initial guess (deterministic): light-curve's default of 10 iterations
# stopped short of the minimum on 48 of 72 real band curves, 100 on 9 (as many as MCMC then LM, at 1/3 the cost);
# tests/pipelines/test_bazin_features.py.
LMSDER_ITERATIONS = 100
BANDS = tuple(WAVELENGTH_UM)
PARAMS = ("amplitude", "baseline", "reference_time", "rise_time", "fall_time", "reduced_chi2")
_FITS_SCHEMA = pa.schema(
    [("diaObjectId", pa.int64()), ("band", pa.string()), ("n", pa.int32()), *((p, pa.float64()) for p in PARAMS)]
)
BBB = ("BBBRiseRate", "BBBFallRate", "BBBTemp", "BBBPeakFlux", "BBBPeakMJD", "BBBPeakAbsMag")


@functools.cache
def bazin() -> lc.Extractor:
    """The Bazin fit (Levenberg–Marquardt, deterministic)."""
    return lc.Extractor(lc.BazinFit("lmsder", lmsder_niter=LMSDER_ITERATIONS))


def bazin_model(
    t: np.ndarray, a: np.ndarray, b: np.ndarray | float, t0: np.ndarray, rise: np.ndarray, fall: np.ndarray
) -> np.ndarray:
    """The Bazin function."""
    with np.errstate(over="ignore", invalid="ignore"):
        return a * np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise)) + b


def band_fits(detections: pa.Table, ebv: pa.Table | None = None) -> pa.Table:
    """One row per (object, band) curve with at least ``MIN_POINTS`` distinct times in the ``WINDOW_DAYS`` before
    the object's newest detection, of the object's two best-sampled bands there: ``diaObjectId, band, n`` and the
    fit's parameters ``amplitude ... reduced_chi2`` (NaN where the fit failed)."""
    table = detections.select(["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr"]).drop_null()
    if table.num_rows == 0:
        return _FITS_SCHEMA.empty_table()
    if ebv is not None and ebv.num_rows:
        where = pc.index_in(table["diaObjectId"], ebv["diaObjectId"])
        e = pc.fill_null(pc.take(ebv["ebv"], where), 0.0).to_numpy(zero_copy_only=False)
    else:
        e = np.zeros(table.num_rows)
    r = pc.fill_null(pc.take(pa.array(list(EXTINCTION_R.values())), pc.index_in(table["band"], pa.array(BANDS))), 0.0)
    scale = 10 ** (0.4 * r.to_numpy(zero_copy_only=False) * e)
    band_code = pc.fill_null(pc.index_in(table["band"], pa.array(BANDS)), -1).to_numpy(zero_copy_only=False)
    obj = table["diaObjectId"].to_numpy()
    t = np.asarray(table["midpointMjdTai"].to_numpy(), np.float64)
    f = np.asarray(table["psfFlux"].to_numpy(), np.float64) * scale
    err = np.asarray(table["psfFluxErr"].to_numpy(), np.float64) * scale
    order = np.lexsort((err, t, band_code, obj))
    obj, band_code, t, f, err = obj[order], band_code[order], t[order], f[order], err[order]
    same = (obj[1:] == obj[:-1]) & (band_code[1:] == band_code[:-1])
    keep = np.concatenate([[True], ~(same & (t[1:] == t[:-1]))]) & (err > 0) & (band_code >= 0)
    obj, band_code, t, f, err = obj[keep], band_code[keep], t[keep], f[keep], err[keep]
    if len(obj) == 0:
        return _FITS_SCHEMA.empty_table()
    # the object's latest event: its detections of the WINDOW_DAYS before its newest
    object_starts = np.flatnonzero(np.concatenate([[True], obj[1:] != obj[:-1]]))
    newest = np.maximum.reduceat(t, object_starts)
    recent = t >= np.repeat(newest, np.diff(np.append(object_starts, len(obj)))) - WINDOW_DAYS
    obj, band_code, t, f, err = obj[recent], band_code[recent], t[recent], f[recent], err[recent]
    starts = np.flatnonzero(np.concatenate([[True], (obj[1:] != obj[:-1]) | (band_code[1:] != band_code[:-1])]))
    bounds = np.append(starts, len(obj))
    sizes = np.diff(bounds)
    fit = (sizes >= MIN_POINTS) & _two_best(obj[starts], sizes, band_code[starts])
    curves = [(t[a:b], f[a:b], err[a:b]) for (a, b), ok in zip(itertools.pairwise(bounds), fit, strict=True) if ok]
    values = evaluate(bazin(), curves)
    columns: dict[str, pa.Array] = {
        "diaObjectId": pa.array(obj[starts[fit]], pa.int64()),
        "band": pa.array(np.array(BANDS)[band_code[starts[fit]]], pa.string()),
        "n": pa.array(sizes[fit], pa.int32()),
    }
    for j, name in enumerate(PARAMS):
        columns[name] = pa.array(values[:, j], pa.float64())
    return pa.table(columns)


def _two_best(obj: np.ndarray, sizes: np.ndarray, band_code: np.ndarray) -> np.ndarray:
    """Which (object, band) curves are among their object's two best-sampled (most points; ties: the redder
    band): the only ones ``bbb_features`` reads, so the only ones fitted (a fit costs ~0.3 ms a curve)."""
    order = np.lexsort((-band_code, -sizes, obj))
    ranked = obj[order]
    first = np.concatenate([[True], ranked[1:] != ranked[:-1]]) if len(ranked) else np.zeros(0, bool)
    second = np.concatenate([[False], first[:-1]]) & ~first if len(ranked) else np.zeros(0, bool)
    out = np.zeros(len(obj), bool)
    out[order[first | second]] = True
    return out


def bbb_features(fits: pa.Table, distance: pa.Table | None = None) -> pa.Table:
    """Lasair's ``BBB*`` columns per object from its band fits (``band_fits``); ``distance``: ``diaObjectId,
    distance`` (Mpc) for ``BBBPeakAbsMag``."""
    good = fits.filter(pc.and_(pc.is_finite(fits["rise_time"]), pc.greater(fits["rise_time"], 0.0)))
    good = good.filter(pc.and_(pc.is_finite(good["fall_time"]), pc.greater(good["fall_time"], 0.0)))
    band_code = pc.index_in(good["band"], pa.array(BANDS))
    good = good.append_column("code", band_code)
    # best-sampled first; ties: the redder band
    good = good.sort_by([("diaObjectId", "ascending"), ("n", "descending"), ("code", "descending")])
    obj = good["diaObjectId"].to_numpy()
    first = np.concatenate([[True], obj[1:] != obj[:-1]]) if len(obj) else np.zeros(0, bool)
    second = np.concatenate([[False], first[:-1]]) & ~first if len(obj) else np.zeros(0, bool)
    col = {n: np.asarray(good[n].to_numpy(), np.float64) for n in PARAMS}
    a, t0, rise, fall = (col[n] for n in PARAMS[:5] if n != "baseline")
    with np.errstate(divide="ignore", invalid="ignore"):
        # dF/dt = 0 at t0 + τ_rise·ln(τ_fall/τ_rise − 1): a maximum when τ_fall > τ_rise (and A > 0)
        peaked = (fall > rise) & (a > 0)
        t_peak = np.where(peaked, t0 + rise * np.log(np.where(peaked, fall / rise - 1, 1.0)), np.nan)
    ids = obj[first]
    tp = t_peak[first]
    peak_flux = bazin_model(tp, a[first], 0.0, t0[first], rise[first], fall[first])
    # the next band's model at the best band's peak time
    temp = np.full(len(ids), np.nan)
    if second.any():
        rows = np.searchsorted(ids, obj[second])  # ids are sorted
        other = bazin_model(tp[rows], a[second], 0.0, t0[second], rise[second], fall[second])
        w_first = np.array(list(WAVELENGTH_UM.values()))[good["code"].to_numpy()[first]][rows]
        w_other = np.array(list(WAVELENGTH_UM.values()))[good["code"].to_numpy()[second]]
        blue_is_first = w_first < w_other
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            ratio = np.where(blue_is_first, peak_flux[rows] / other, other / peak_flux[rows])
        temp[rows] = temperature_kk(
            ratio, np.where(blue_is_first, w_first, w_other), np.where(blue_is_first, w_other, w_first)
        )
    peak_ok = np.isfinite(tp) & (peak_flux > 0)
    out = {
        "diaObjectId": pa.array(ids, pa.int64()),
        "BBBRiseRate": pa.array(1 / rise[first], pa.float64()),
        "BBBFallRate": pa.array(1 / fall[first], pa.float64()),
        "BBBTemp": pa.array(temp, pa.float64(), from_pandas=True),
        "BBBPeakFlux": pa.array(np.where(peak_ok, peak_flux, np.nan), pa.float64(), from_pandas=True),
        "BBBPeakMJD": pa.array(np.where(peak_ok, tp, np.nan), pa.float64(), from_pandas=True),
    }
    table = pa.table(out)
    d = np.full(len(ids), np.nan)
    if distance is not None and distance.num_rows:
        where = pc.index_in(table["diaObjectId"], distance["diaObjectId"])
        d = np.asarray(pc.fill_null(pc.take(distance["distance"], where), np.nan).to_numpy(zero_copy_only=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        absmag = 31.4 - 2.5 * np.log10(np.where(peak_ok, peak_flux, np.nan)) - 5 * np.log10(d * 1e5)
    return table.append_column("BBBPeakAbsMag", pa.array(absmag, pa.float64(), from_pandas=True))
