"""``nightjar bench filters``: many streaming filters over one large batch, as the pipeline runs them.

The batch has the lake's full ``sources`` and ``objects`` schemas, with realistic values in the columns filters
use; the filters mix the shapes users write (thresholds per band, magnitudes, cones, object statistics, a few
joins and window functions). The figure is the steady-state time of one batch (plans compiled once, as on a
worker); the baseline is the same filters each run as its own query, measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from nightjar.sql import compile, sandbox, streaming, views

BANDS = ("u", "g", "r", "i", "z", "y")


def synthetic_batch(alerts: int, seed: int = 1) -> dict[str, pa.Table]:
    """A batch of ``alerts`` sources (and their objects) with every lake column; unused columns are null."""
    rng = np.random.default_rng(seed)
    n_obj = max(1, alerts // 4)
    object_ids = 170_000_000_000_000_000 + rng.permutation(n_obj).astype(np.int64)
    owner = rng.integers(0, n_obj, alerts)
    ra0 = rng.uniform(0, 360, n_obj)
    dec0 = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-75)), np.sin(np.radians(5)), n_obj)))
    flux = 10 ** rng.uniform(2.5, 5.5, alerts)
    err = np.sqrt(flux * 2 + 200.0**2)
    mjd = 60950.0 + rng.uniform(0, 0.4, alerts)
    values: dict[str, np.ndarray] = {
        "diaSourceId": 171_000_000_000_000_000 + np.arange(alerts, dtype=np.int64),
        "diaObjectId": object_ids[owner],
        "visit": rng.integers(2025090500000, 2025090500900, alerts),
        "detector": rng.integers(0, 189, alerts).astype(np.int32),
        "midpointMjdTai": mjd,
        "ra": ra0[owner] + rng.normal(0, 1e-5, alerts),
        "dec": dec0[owner] + rng.normal(0, 1e-5, alerts),
        "psfFlux": flux.astype(np.float32),
        "psfFluxErr": err.astype(np.float32),
        "snr": (flux / err).astype(np.float32),
        "scienceFlux": (flux + 1000).astype(np.float32),
        "reliability": rng.beta(8, 2, alerts).astype(np.float32),
        "extendedness": rng.uniform(0, 1, alerts).astype(np.float32),
        "isNegative": rng.random(alerts) < 0.1,
        "band": np.asarray(BANDS)[rng.integers(0, 6, alerts)],
        "night": np.floor(mjd).astype(np.int32),
    }
    sources = _fill(views.placeholder_schemas()[views.SOURCES], alerts, values)
    n_det = rng.integers(1, 40, n_obj).astype(np.int32)
    last = np.full(n_obj, -1, dtype=np.int64)
    last[owner] = values["diaSourceId"]  # the later alert of an object wins
    obj_values: dict[str, np.ndarray] = {
        "diaObjectId": object_ids,
        "ra": ra0,
        "dec": dec0,
        "nDiaSources": n_det,
        "lastDiaSourceId": np.where(last >= 0, last, 0),
        views.OBJECT_ORDER: np.full(n_obj, 60950.4),
    }
    for band in BANDS:
        peak = 10 ** rng.uniform(2.5, 5.5, n_obj)
        obj_values[f"{band}_psfFluxMax"] = peak
        obj_values[f"{band}_psfFluxMean"] = peak * rng.uniform(0.3, 1.0, n_obj)
        obj_values[f"{band}_psfFluxNdata"] = rng.integers(0, 20, n_obj).astype(np.int32)
    objects = _fill(views.placeholder_schemas()[views.OBJECTS], n_obj, obj_values)
    return {views.SOURCES: sources, views.OBJECTS: objects}


def _fill(schema: pa.Schema, n: int, values: dict[str, np.ndarray]) -> pa.Table:
    columns = [pa.array(values[f.name], f.type) if f.name in values else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def sample_filters(n: int, seed: int = 2) -> list[str]:
    """``n`` filters of the shapes users write; about one in a hundred needs a query of its own."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 100
        band = BANDS[int(rng.integers(0, 6))]
        if kind == 99:
            out.append(
                "SELECT s.diaObjectId, s.diaSourceId, o.nDiaSources, s.psfFlux FROM sources s "
                f"JOIN objects o USING (diaObjectId) WHERE o.nDiaSources > {int(rng.integers(20, 40))} "
                f"AND s.psfFlux > {float(rng.uniform(1e5, 3e5)):.1f}"
            )
        elif kind == 98:
            out.append(
                "SELECT diaObjectId, diaSourceId, psfFlux - lag(psfFlux) OVER (PARTITION BY diaObjectId "
                f"ORDER BY midpointMjdTai) AS rise FROM sources QUALIFY rise > {float(rng.uniform(5e4, 2e5)):.1f}"
            )
        elif kind < 40:
            out.append(
                "SELECT diaObjectId, diaSourceId, ra, dec, psfFlux, mag(psfFlux) AS mag, reliability FROM sources "
                f"WHERE band = '{band}' AND psfFlux > {float(rng.uniform(3e3, 3e5)):.1f} "
                f"AND reliability > {float(rng.choice([0.5, 0.6, 0.7, 0.8, 0.9])):.1f}"
            )
        elif kind < 60:
            out.append(
                "SELECT diaObjectId, diaSourceId, snr, midpointMjdTai FROM sources "
                f"WHERE band = '{band}' AND snr > {float(rng.uniform(100, 500)):.1f} AND NOT isNegative "
                f"AND extendedness < {float(rng.uniform(0.05, 0.5)):.2f}"
            )
        elif kind < 75:
            ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-70, 0))
            out.append(
                "SELECT diaObjectId, diaSourceId, ra, dec, band, psfFlux FROM sources "
                f"WHERE in_cone(ra, dec, {ra:.4f}, {dec:.4f}, {float(rng.uniform(60, 3600)):.0f})"
            )
        elif kind < 90:
            out.append(
                f"SELECT diaObjectId, ra, dec, nDiaSources, {band}_psfFluxMax FROM objects "
                f"WHERE nDiaSources >= {int(rng.integers(20, 40))} AND {band}_psfFluxMax > "
                f"{float(rng.uniform(1e5, 3e5)):.1f}"
            )
        else:
            lo = float(rng.uniform(16, 21))
            out.append(
                f"SELECT * FROM sources WHERE mag(psfFlux) BETWEEN {lo:.2f} AND {lo + 0.5:.2f} "
                f"AND band IN ('{band}', 'r') AND reliability > 0.8"
            )
    return out


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_bench(alerts: int, n_filters: int, repeat: int, threads: int, echo: Callable[[str], None] = print) -> float:
    """Print the benchmark's lines and return the steady-state seconds per batch."""
    tables = synthetic_batch(alerts)
    specs = [compile.FilterSpec(i + 1, 1, sql) for i, sql in enumerate(sample_filters(n_filters))]
    limits = sandbox.Limits(memory="2GB", threads=threads, timeout_s=120.0, max_rows=alerts)
    cold = _timed(lambda: streaming.run_filters(tables, specs, limits))  # compiles the plan, makes the engine
    plan = compile.compile_filters(specs, views.schemas_of(views.with_placeholders(tables)))  # cached now
    results: list[streaming.FilterResult] = []

    def once() -> None:
        results[:] = streaming.run_filters(tables, specs, limits)

    warm = [_timed(once) for _ in range(repeat)]
    steady = statistics.median(warm)
    errors = [r for r in results if r.error]
    matches = sum(r.count for r in results)
    echo(f"batch: {alerts} alerts, {tables[views.OBJECTS].num_rows} objects; filters: {n_filters}")
    echo(
        f"plan: {len(plan.groups)} shared passes ({sum(len(g.members) for g in plan.groups)} filters, "
        f"{sum(len({c for m in g.members for c in m.conjuncts}) for g in plan.groups)} conditions), "
        f"{len(plan.solos)} queries alone"
    )
    echo(f"matches: {matches} rows over {sum(1 for r in results if r.count)} filters; errors: {len(errors)}")
    echo(f"first batch (compile + run): {cold:.3f} s")
    echo(f"steady batch: median {steady:.3f} s of {repeat} ({', '.join(f'{w:.3f}' for w in warm)})")
    box = sandbox.connect(views.with_placeholders(tables), limits)
    try:
        baseline = _timed(lambda: [sandbox.run(box, s.sql, limits) for s in specs])
    finally:
        box.close()
    echo(
        f"baseline, each filter as its own query: {baseline:.3f} s (shared passes are {baseline / steady:.1f}x faster)"
    )
    echo(f"filters_{n_filters}_on_{alerts // 1000}k_s={steady:.3f}")
    return steady
