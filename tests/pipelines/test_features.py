"""Object features in the lake against an independent computation on real ZTF light curves."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path

import fastavro
import numpy as np
import pytest
from distributed import Client

from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake

FOLDERS = ["ampel-2018-early", "ampel-2018-v3.0", "ztf-avro-alert-samples", "boom-2024-v4.02"]


def light_curves(files: list[Path]) -> dict[str, list[tuple[float, str, float, float, float]]]:
    """Per ZTF objectId: (mjd, band, flux nJy, flux error nJy, reliability) of every detection, from fastavro."""
    curves: dict[str, dict[int, tuple]] = defaultdict(dict)
    for path in files:
        for alert in fastavro.reader(io.BytesIO(path.read_bytes())):
            assert isinstance(alert, dict)
            for c in [alert["candidate"], *(alert["prv_candidates"] or [])]:
                if c["candid"] is None:
                    continue
                sign = -1 if c["isdiffpos"] in ("f", "0") else 1
                flux = sign * 10 ** ((31.4 - c["magpsf"]) / 2.5)
                err = abs(flux) * c["sigmapsf"] * math.log(10) / 2.5
                rel = c["rb"]  # the score both candidate and prv_candidates carry (drb is the alert's, on objects)
                band = {1: "g", 2: "r", 3: "i"}[c["fid"]]
                curves[alert["objectId"]][c["candid"]] = (c["jd"] - 2400000.5, band, flux, err, rel)
    return {k: sorted(v.values()) for k, v in curves.items()}


@pytest.fixture
def lake(settings: Settings, dask_client: Client, data_dir: Path) -> tuple[Settings, dict]:
    files = [f for folder in FOLDERS for f in sorted((data_dir / "alerts/ztf" / folder).glob("*.avro"))]
    ingest(settings, dask_client, files)
    return settings, light_curves(files)


def test_features_equal_an_independent_computation(lake: tuple[Settings, dict]) -> None:
    settings, curves = lake
    rows = query_lake(settings, "SELECT * FROM objects").to_pylist()
    assert {r["objectId"] for r in rows} == set(curves)
    checked = 0
    for row in rows:
        curve = curves[row["objectId"]]
        t = np.array([c[0] for c in curve])
        f = np.array([c[2] for c in curve], dtype=np.float32).astype(float)
        e = np.array([c[3] for c in curve], dtype=np.float32).astype(float)
        bands = np.array([c[1] for c in curve])
        assert row["nSources"] == row["ncand"] == len(curve)
        assert row["firstDiaSourceMjd"] == pytest.approx(t.min(), abs=1e-6)
        assert row["lastDiaSourceMjd"] == pytest.approx(t.max(), abs=1e-6)
        assert row["jdmax"] == pytest.approx(t.max() + 2400000.5, abs=1e-6)
        g = bands == "g"
        assert row["g_nSources"] == int(g.sum())
        if g.any():
            assert row["g_meanFlux"] == pytest.approx(f[g].mean(), rel=1e-6)
            latest = f[g][np.argmax(t[g])]
            if latest > 0:
                assert row["g_latestMag"] == pytest.approx(31.4 - 2.5 * math.log10(latest), abs=1e-5)
        # light-curve features use one detection per time: the one with the smallest error.
        order = np.lexsort((e, t))
        t, f, e = t[order], f[order], e[order]
        unique = np.concatenate([[True], np.diff(t) != 0])
        t, f, e = t[unique], f[unique], e[unique]
        assert row["lc_mean"] == pytest.approx(f.mean(), rel=1e-6)
        if len(t) >= 2:
            assert row["lc_standard_deviation"] == pytest.approx(f.std(ddof=1), rel=1e-5)
            assert row["lc_amplitude"] == pytest.approx((f.max() - f.min()) / 2, rel=1e-6)
        if len(t) >= 3:
            # Weighted least squares, as light-curve's LinearFit defines it.
            slope = np.polyfit(t - t.mean(), f, 1, w=1 / e)[0]
            assert row["lc_linear_fit_slope"] == pytest.approx(slope, rel=1e-4)
            checked += 1
    assert checked >= 10
