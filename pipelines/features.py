"""Object features from light curves: Lasair-style summary columns (DuckDB) and the ``light-curve`` feature set.

Input: detections (``diaObjectId, midpointMjdTai, band, psfFlux, psfFluxErr, reliability``) of the objects to
describe, their whole available history. Output: one row per object. Magnitudes are AB: 31.4 − 2.5·log10(nJy).

Two mean magnitudes per band, which differ for a variable source:

- ``{band}_meanMag``: the magnitude of the mean flux, 31.4 − 2.5·log10(mean(psfFlux)) (null when the mean flux is
  not positive);
- ``{band}_meanPsfMag``: the mean of the detections' PSF magnitudes, mean(31.4 − 2.5·log10(|psfFlux|)); for ZTF
  this is the mean of ``magpsf`` (the magnitude of the difference flux, whatever its sign), as Lasair-ZTF's
  ``gmean``/``rmean``.
"""

from __future__ import annotations

import functools
import itertools
import threading

import duckdb
import light_curve as lc
import numpy as np
import pyarrow as pa

BANDS = ("u", "g", "r", "i", "z", "y")
JD_MJD = 2400000.5
COLOUR_PAIR_DAYS = 1.0  # g and r detections closer than this form a colour


@functools.cache
def extractor() -> lc.Extractor:
    """The light-curve features computed on each object's flux light curve (all bands)."""
    return lc.Extractor(
        lc.Amplitude(),
        lc.BeyondNStd(1.0),
        lc.Kurtosis(),
        lc.LinearFit(),
        lc.Mean(),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StandardDeviation(),
        lc.StetsonK(),
        lc.WeightedMean(),
    )


def _mag(expr: str) -> str:
    return f"CASE WHEN {expr} > 0 THEN 31.4 - 2.5 * log10({expr}) END"


def _summary_sql() -> str:
    # Per (object, band) first, with plain aggregates over one newest-first ranking, then one column per band
    # from those few rows: filtered aggregates over every detection cost a pass each (50 passes, ~10x slower).
    stats = [
        *("nSources", "latestFlux", "latestMjd", "meanFlux", "meanPsfMag"),
        *("maxFlux", "minFlux", "prevFlux", "prevMjd"),
    ]
    per_band = [
        f"coalesce(max(nSources) FILTER (WHERE band = '{b}'), 0) AS {b}_nSources"
        if stat == "nSources"
        else f"max({stat}) FILTER (WHERE band = '{b}') AS {b}_{stat}"
        for b in BANDS
        for stat in stats
    ]
    return f"""
        WITH ranked AS (
            SELECT *, row_number() OVER (PARTITION BY diaObjectId, band ORDER BY midpointMjdTai DESC) AS k
            FROM detections
        ), bands AS (
            SELECT diaObjectId, band,
                   count(*) AS nSources,
                   max(CASE WHEN k = 1 THEN psfFlux END) AS latestFlux,
                   max(midpointMjdTai) AS latestMjd,
                   avg(psfFlux) AS meanFlux,
                   -- ZTF's magpsf is the magnitude of |flux| (isdiffpos gives the sign): their mean, as Lasair-ZTF's
                   avg(CASE WHEN psfFlux <> 0 THEN 31.4 - 2.5 * log10(abs(psfFlux)) END) AS meanPsfMag,
                   max(psfFlux) AS maxFlux,
                   min(psfFlux) AS minFlux,
                   max(CASE WHEN k = 2 THEN psfFlux END) AS prevFlux,
                   max(CASE WHEN k = 2 THEN midpointMjdTai END) AS prevMjd
            FROM ranked GROUP BY diaObjectId, band
        ), overall AS (
            SELECT diaObjectId,
                   count(*) AS nSources,
                   min(midpointMjdTai) AS firstDiaSourceMjd,
                   max(midpointMjdTai) AS lastDiaSourceMjd,
                   arg_max(reliability, midpointMjdTai) AS latestReliability,
                   median(reliability) AS medianReliability,
                   arg_max(psfFlux, midpointMjdTai) AS latestFlux,
                   arg_max(psfFluxErr, midpointMjdTai) AS latestFluxErr,
                   arg_max(band, midpointMjdTai) AS latestBand
            FROM detections GROUP BY diaObjectId
        ), pivoted AS (
            SELECT diaObjectId, {", ".join(per_band)} FROM bands GROUP BY diaObjectId
        )
        SELECT o.*, p.* EXCLUDE (diaObjectId) FROM overall o JOIN pivoted p USING (diaObjectId)
    """


def _derived_sql() -> str:
    cols = []
    for b in BANDS:
        cols += [
            f"{_mag(f'{b}_latestFlux')} AS {b}_latestMag",
            f"{_mag(f'{b}_meanFlux')} AS {b}_meanMag",
            f"{_mag(f'{b}_maxFlux')} AS {b}_minMag",  # brightest
            f"{_mag(f'{b}_minFlux')} AS {b}_maxMag",  # faintest
            f"({_mag(f'{b}_latestFlux')} - {_mag(f'{b}_prevFlux')}) / nullif({b}_latestMjd - {b}_prevMjd, 0)"
            f" AS {b}_dmdt",
        ]
    return f"""
        SELECT s.*, {", ".join(cols)},
               s.nSources AS ncand,
               s.firstDiaSourceMjd + {JD_MJD} AS jdmin,
               s.lastDiaSourceMjd + {JD_MJD} AS jdmax,
               j.jumpSigma,
               c.g_minus_r, c.colourMjd
        FROM summary s
        LEFT JOIN jumps j USING (diaObjectId)
        LEFT JOIN colours c USING (diaObjectId)
    """


_JUMPS = """
    WITH ranked AS (
        SELECT *, row_number() OVER (PARTITION BY diaObjectId ORDER BY midpointMjdTai DESC) AS k,
               arg_max(band, midpointMjdTai) OVER (PARTITION BY diaObjectId) AS lastBand
        FROM detections
    ), latest AS (SELECT * FROM ranked WHERE k = 1),
    earlier AS (
        SELECT r.diaObjectId, avg(r.psfFlux) AS mean, stddev_samp(r.psfFlux) AS sd
        FROM ranked r WHERE r.k > 1 AND r.band = r.lastBand GROUP BY r.diaObjectId
    )
    SELECT l.diaObjectId,
           (l.psfFlux - e.mean) / sqrt(coalesce(e.sd, 0) ^ 2 + l.psfFluxErr ^ 2) AS jumpSigma
    FROM latest l JOIN earlier e USING (diaObjectId)
"""

_COLOURS = f"""
    WITH g AS (SELECT diaObjectId, midpointMjdTai AS t, psfFlux AS f FROM detections WHERE band = 'g' AND psfFlux > 0),
         r AS (SELECT diaObjectId, midpointMjdTai AS t, psfFlux AS f FROM detections WHERE band = 'r' AND psfFlux > 0),
         pairs AS (
            SELECT g.diaObjectId, greatest(g.t, r.t) AS t, abs(g.t - r.t) AS gap, -2.5 * log10(g.f / r.f) AS colour
            FROM g JOIN r ON g.diaObjectId = r.diaObjectId AND abs(g.t - r.t) < {COLOUR_PAIR_DAYS}
         )
    -- The newest pair; of pairs ending at the same detection, the closest in time (then the bluest), so that the
    -- answer does not depend on the order of the rows (which follows the order the alerts arrived in).
    SELECT diaObjectId, colour AS g_minus_r, t AS colourMjd FROM pairs
    QUALIFY row_number() OVER (PARTITION BY diaObjectId ORDER BY t DESC, gap, colour) = 1
"""


@functools.cache
def _features_sql() -> str:
    return f"WITH summary AS ({_summary_sql()}), jumps AS ({_JUMPS}), colours AS ({_COLOURS}) {_derived_sql()}"


_LOCAL = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection for features: opening a database costs more than a batch's query."""
    con: duckdb.DuckDBPyConnection | None = getattr(_LOCAL, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET threads = 1")  # a batch's detections are small: more threads only add contention
        _LOCAL.con = con
    return con


def summary_features(detections: pa.Table) -> pa.Table:
    """Lasair-style columns per object (counts, first/last MJD, per-band latest/mean/min/max flux and
    magnitude, rise/fall rate ``{band}_dmdt`` in mag/day, jump of the latest detection in sigma, latest g−r
    pair colour, latest and median reliability; ZTF's ncand/jdmin/jdmax)."""
    con = _connection()
    con.register("detections", detections)
    try:
        return con.sql(_features_sql()).to_arrow_table()
    finally:
        con.unregister("detections")


def curve_features(detections: pa.Table) -> pa.Table:
    """The ``light-curve`` features of each object's flux light curve (all bands), columns ``lc_<name>``.

    light-curve needs strictly increasing times: of detections at the same time (ZTF has some), the one with
    the smallest error is used.
    """
    table = detections.select(["diaObjectId", "midpointMjdTai", "psfFlux", "psfFluxErr"]).drop_null()
    table = table.sort_by([("diaObjectId", "ascending"), ("midpointMjdTai", "ascending"), ("psfFluxErr", "ascending")])
    obj = table["diaObjectId"].to_numpy()
    t = np.asarray(table["midpointMjdTai"].to_numpy(), dtype=np.float64)
    f = np.asarray(table["psfFlux"].to_numpy(), dtype=np.float64)
    e = np.asarray(table["psfFluxErr"].to_numpy(), dtype=np.float64)
    keep = np.ones(len(t), dtype=bool)
    keep[1:] = ~((obj[1:] == obj[:-1]) & (t[1:] == t[:-1])) & (e[1:] > 0)
    keep[:1] = e[:1] > 0
    obj, t, f, e = obj[keep], t[keep], f[keep], e[keep]
    ids, starts = np.unique(obj, return_index=True)
    bounds = np.append(starts, len(obj))
    ext = extractor()
    curves = [(t[a:b], f[a:b], e[a:b]) for a, b in itertools.pairwise(bounds)]
    values = (
        ext.many(curves, fill_value=np.nan, sorted=True, check=False, n_jobs=1)
        if curves
        else np.empty((0, len(ext.names)))
    )
    columns = {"diaObjectId": pa.array(ids, pa.int64())}
    for j, name in enumerate(ext.names):
        columns[f"lc_{name}"] = pa.array(np.asarray(values)[:, j] if len(curves) else [], pa.float64())
    return pa.table(columns)


def object_features(detections: pa.Table) -> pa.Table:
    """Summary and light-curve features, one row per ``diaObjectId`` of ``detections``."""
    summary = summary_features(detections)
    curves = curve_features(detections)
    return summary.join(curves, keys="diaObjectId", join_type="left outer", coalesce_keys=True)
