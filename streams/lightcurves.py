"""Light-curve models of the simulator's classes: difference-image flux in nJy against time and band."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("SNIa", "SNII", "NT", "VS", "AGN", "FAST", "SSO")
WEIGHTS = (0.25, 0.12, 0.03, 0.25, 0.15, 0.08, 0.12)
TRANSIENTS = ("SNIa", "SNII", "NT", "FAST")
BAND_COLOUR = {"u": 0.45, "g": 0.85, "r": 1.0, "i": 0.95, "z": 0.85, "y": 0.75}


@dataclass(frozen=True)
class Model:
    """A simulated object's light-curve model: class, peak amplitude in nJy, reference time, period or time scale, and
    the phases of the periodic classes."""

    cls: str
    amplitude: float  # nJy at peak in r
    t0: float  # MJD of explosion, peak or phase zero
    period: float  # days (VS); damping time (AGN)
    phases: tuple[float, ...] = ()


def draw(cls: str, start: float, nights: int, rng: np.random.Generator) -> Model:
    """A model of class ``cls`` whose interesting part falls in the window ``[start, start + nights)``."""
    amplitude = float(10 ** rng.uniform(3.6, 5.2))
    if cls in TRANSIENTS:
        t0 = float(start + rng.uniform(-5 if cls != "FAST" else 0, nights))
    else:
        t0 = float(start - rng.uniform(0, 100))
    period = float(rng.uniform(0.2, 20.0) if cls == "VS" else rng.uniform(50, 300))
    return Model(cls, amplitude, t0, period, tuple(float(x) for x in rng.uniform(0, 2 * np.pi, 4)))


def flux(model: Model, mjd: float, band: str) -> float:
    """The difference-image flux (nJy) of ``model`` at ``mjd`` in ``band``."""
    a = model.amplitude * BAND_COLOUR[band]
    dt = mjd - model.t0
    if model.cls == "SNIa":  # Bazin: 3-day rise, 30-day decline
        return float(a * np.exp(-dt / 30.0) / (1 + np.exp(-dt / 3.0))) if dt > -30 else 0.0
    if model.cls == "SNII":  # rise, 80-day plateau, drop
        if dt < -10:
            return 0.0
        rise = 1 / (1 + np.exp(-dt / 2.0))
        return float(a * 0.7 * rise * (1.0 if dt < 80 else np.exp(-(dt - 80) / 10.0)))
    if model.cls == "NT":  # tidal-disruption-like: slow rise, t^-5/3 decline
        if dt < -20:
            return 0.0
        return float(a * (np.exp(dt / 10.0) if dt < 0 else (1 + dt / 20.0) ** (-5 / 3)))
    if model.cls == "FAST":  # hours-long flare
        return float(a * np.exp(-abs(dt) / 0.2))
    if model.cls == "VS":  # pulsator: fundamental and first harmonic
        x = 2 * np.pi * dt / model.period
        return float(0.5 * a * (np.sin(x + model.phases[0]) + 0.3 * np.sin(2 * x + model.phases[1])))
    if model.cls == "AGN":  # stochastic-looking: incommensurate slow sinusoids
        t = dt / model.period
        return float(
            0.3 * a * sum(np.sin(t * w + p) for w, p in zip((1.0, 2.7, 6.1, 13.3), model.phases, strict=True)) / 2
        )
    return float(a)  # SSO: a single detection at its own brightness


def fluxes(models: list[Model], which: np.ndarray, mjd: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``flux`` of many measurements at once: row ``j`` is ``models[which[j]]`` at ``mjd[j]``, in a band of
    colour ``colour[j]`` (``BAND_COLOUR``)."""
    amplitude = np.array([m.amplitude for m in models])[which] * colour
    dt = mjd - np.array([m.t0 for m in models])[which]
    period = np.array([m.period for m in models])[which]
    phases = np.array([m.phases or (0.0,) * 4 for m in models]).reshape(len(models), 4)[which]
    cls = np.array([m.cls for m in models])[which]
    out = np.zeros(len(mjd))
    for name in set(cls.tolist()):
        k = np.flatnonzero(cls == name)
        a, t = amplitude[k], dt[k]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if name == "SNIa":
                f = np.where(t > -30, a * np.exp(-t / 30.0) / (1 + np.exp(-t / 3.0)), 0.0)
            elif name == "SNII":
                shape = np.where(t < 80, 1.0, np.exp(-(t - 80) / 10.0))
                f = np.where(t < -10, 0.0, a * 0.7 / (1 + np.exp(-t / 2.0)) * shape)
            elif name == "NT":
                shape = np.where(t < 0, np.exp(t / 10.0), (1 + np.maximum(t, 0.0) / 20.0) ** (-5 / 3))
                f = np.where(t < -20, 0.0, a * shape)
            elif name == "FAST":
                f = a * np.exp(-np.abs(t) / 0.2)
            elif name == "VS":
                x = 2 * np.pi * t / period[k]
                p = phases[k]
                f = 0.5 * a * (np.sin(x + p[:, 0]) + 0.3 * np.sin(2 * x + p[:, 1]))
            elif name == "AGN":
                x = t / period[k]
                p = phases[k]
                waves = sum(np.sin(x * w + p[:, j]) for j, w in enumerate((1.0, 2.7, 6.1, 13.3)))
                f = 0.3 * a * waves / 2
            else:
                f = a
        out[k] = f
    return out
