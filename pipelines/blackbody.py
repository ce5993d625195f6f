"""Blackbody temperatures from a flux ratio in two bands, solved for whole columns at once.

A flux density per unit frequency of a blackbody at wavelength λ (µm) and temperature T (kK) goes as
λ⁻³ / (exp(hc/(λ k T)) − 1), hc/k = 14.388 µm·kK. The ratio of a bluer to a redder band's flux rises with T from 0
towards the Rayleigh–Jeans limit (λ_red/λ_blue)²: each ratio in (0, that limit) has one temperature, found here by
bisection in log T over every ratio at once (no per-row Python).
"""

from __future__ import annotations

import numpy as np

HC_OVER_K = 14.3877688  # µm·kK (hc/k = 14387.77 µm·K)
# Effective wavelengths (µm) of the LSST filters (LSST Science Book / SMTN-002 throughputs); ZTF's g, r, i are
# given the same (ZTF g 0.48, r 0.64, i 0.79: within 0.02 µm except r).
WAVELENGTH_UM = {"u": 0.3671, "g": 0.4827, "r": 0.6223, "i": 0.7546, "z": 0.8691, "y": 0.9712}
# A_band / E(B−V) for the SFD E(B−V) scale, R_V = 3.1: Schlafly & Finkbeiner (2011), table 6, LSST row.
EXTINCTION_R = {"u": 4.145, "g": 3.237, "r": 2.273, "i": 1.684, "z": 1.323, "y": 1.088}
T_MIN_KK, T_MAX_KK = 0.3, 1000.0


def planck_nu(wavelength_um: np.ndarray, temp_kk: np.ndarray) -> np.ndarray:
    """A blackbody's flux density per unit frequency, up to a constant: λ⁻³ / (exp(hc/λkT) − 1)."""
    with np.errstate(over="ignore"):
        return wavelength_um**-3.0 / np.expm1(HC_OVER_K / (wavelength_um * temp_kk))


def temperature_kk(ratio: np.ndarray, blue_um: np.ndarray, red_um: np.ndarray, iterations: int = 60) -> np.ndarray:
    """The temperature (kK) at which a blackbody's flux ratio blue/red equals ``ratio``; NaN where none in
    [0.3, 1000] kK does (ratio not positive, or bluer than the Rayleigh–Jeans limit allows).

    >>> t = temperature_kk(np.array([1.0]), np.array([0.4827]), np.array([0.6223]))
    >>> float(np.round(t, 2)[0])  # equal fluxes (nJy) at g and r
    9.34
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    blue = np.asarray(blue_um, dtype=np.float64)
    red = np.asarray(red_um, dtype=np.float64)
    lo = np.full(ratio.shape, np.log(T_MIN_KK))
    hi = np.full(ratio.shape, np.log(T_MAX_KK))

    def excess(log_t: np.ndarray) -> np.ndarray:
        t = np.exp(log_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            return planck_nu(blue, t) / planck_nu(red, t) - ratio

    ok = np.isfinite(ratio) & (ratio > 0) & (excess(lo) < 0) & (excess(hi) > 0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = excess(mid) > 0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(ok, np.exp((lo + hi) / 2), np.nan)
