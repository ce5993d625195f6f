"""Sky maps in the Mollweide projection, as plotly.js traces (no map tiles or projections fetched from anywhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

SQRT2 = np.sqrt(2.0)


def mollweide(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mollweide x, y (x in [-2√2, 2√2], y in [-√2, √2]) of positions, RA increasing to the left, 180° at the centre.

    Examples
    --------
    >>> x, y = mollweide(np.array([180.0]), np.array([90.0]))
    >>> float(round(x[0], 6)), float(round(y[0], 6))
    (0.0, 1.414214)
    """
    lon = np.radians(180.0 - np.asarray(ra_deg, dtype=np.float64))
    lat = np.radians(np.asarray(dec_deg, dtype=np.float64))
    theta = lat.copy()
    target = np.pi * np.sin(lat)
    for _ in range(50):  # Newton on 2θ + sin 2θ = π sin φ; converges in a few steps away from the poles
        f = 2 * theta + np.sin(2 * theta) - target
        d = 2 + 2 * np.cos(2 * theta)
        step = np.where(d > 1e-12, f / np.where(d > 1e-12, d, 1.0), 0.0)
        theta -= step
        if np.all(np.abs(step) < 1e-10):
            break
    return 2 * SQRT2 / np.pi * lon * np.cos(theta), SQRT2 * np.sin(theta)


def _line(ra: np.ndarray, dec: np.ndarray) -> dict[str, Any]:
    x, y = mollweide(ra, dec)
    return {"x": x.round(4).tolist(), "y": y.round(4).tolist()}


def sky_traces(ra: list[float], dec: list[float], labels: list[str], name: str) -> list[dict[str, Any]]:
    """plotly.js traces: the sky's outline and graticule, then the positions as markers (``name`` in the legend)."""
    grid = {"type": "scatter", "mode": "lines", "hoverinfo": "skip", "showlegend": False}
    traces = []
    steps = np.linspace(-90, 90, 91)
    for ra_line in (0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 359.999):
        traces.append({**grid, **_line(np.full(steps.size, ra_line), steps), "line": {"color": "#bbb", "width": 1}})
    around = np.linspace(0.0, 359.999, 181)
    for dec_line in (-60.0, -30.0, 0.0, 30.0, 60.0):
        traces.append({**grid, **_line(around, np.full(around.size, dec_line)), "line": {"color": "#bbb", "width": 1}})
    x, y = mollweide(np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64))
    traces.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": name,
            "x": x.round(5).tolist(),
            "y": y.round(5).tolist(),
            "text": labels,
            "hoverinfo": "text",
            "marker": {"size": 7, "color": "#c0392b"},
        }
    )
    return traces
