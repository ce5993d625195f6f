"""The Mollweide projection of the sky maps."""

from __future__ import annotations

import numpy as np

from nightjar.api.web.skymap import SQRT2, mollweide, sky_traces


def test_mollweide_edges_and_inside() -> None:
    x, y = mollweide(np.array([180.0, 0.0, 359.9999, 180.0, 90.0]), np.array([0.0, 0.0, 0.0, -90.0, 0.0]))
    assert np.allclose(x[:2], [0.0, 2 * SQRT2]) and np.isclose(x[2], -2 * SQRT2, atol=1e-4)
    assert np.allclose(y[:4], [0.0, 0.0, 0.0, -SQRT2])
    assert 0 < x[4] < 2 * SQRT2  # RA grows to the left: 90° lies right of the centre's 180°
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 10_000), np.degrees(np.arcsin(rng.uniform(-1, 1, 10_000)))
    px, py = mollweide(ra, dec)
    assert np.all((px / (2 * SQRT2)) ** 2 + (py / SQRT2) ** 2 <= 1 + 1e-9)
    # Equal areas: a uniform sky fills the ellipse uniformly, so the two halves of the map hold as many points.
    assert abs(np.mean(px > 0) - 0.5) < 0.02 and abs(np.mean(py > 0) - 0.5) < 0.02


def test_sky_traces_end_with_the_positions() -> None:
    traces = sky_traces([10.0, 20.0], [-5.0, 5.0], ["a", "b"], "hits")
    assert traces[-1]["name"] == "hits" and traces[-1]["text"] == ["a", "b"] and len(traces[-1]["x"]) == 2
    assert all(t["showlegend"] is False for t in traces[:-1])
