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
import pyarrow.compute as pc

from nightjar.catalogs.dust import ebv_sfd, galactic
from nightjar.pipelines.bazin_features import band_fits, bbb_features
from nightjar.pipelines.extractors import evaluate
from nightjar.pipelines.lasair_features import lasair_features

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
_ORDER = ("diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "reliability")


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


def curve_features(detections: pa.Table, band: str | None = None) -> pa.Table:
    """The ``light-curve`` features of each object's flux light curve (all bands), columns ``lc_<name>``; with
    ``band``, of its light curve in that band, columns ``<band>_lc_<name>``.

    light-curve needs strictly increasing times: of detections at the same time (ZTF has some), the one with
    the smallest error is used.
    """
    table = detections.select(["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr"]).drop_null()
    if band is not None:
        table = table.filter(pc.equal(table["band"], band))
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
    values = evaluate(ext, [(t[a:b], f[a:b], e[a:b]) for a, b in itertools.pairwise(bounds)])
    columns = {"diaObjectId": pa.array(ids, pa.int64())}
    prefix = "lc_" if band is None else f"{band}_lc_"
    for j, name in enumerate(ext.names):
        columns[f"{prefix}{name}"] = pa.array(values[:, j], pa.float64())
    return pa.table(columns)


def object_features(detections: pa.Table, sky: pa.Table | None = None) -> pa.Table:
    """Summary, Lasair-LSST and light-curve features (all bands and per band), one row per ``diaObjectId`` of
    ``detections``. ``sky``: each object's ``ebv`` and host ``distance`` (Mpc), for the extinction-corrected and
    absolute-magnitude features (``lasair_features.SKY_SCHEMA``); without it they are uncorrected and null."""
    # Rows in a fixed order: floating-point sums (means, deviations) and ties then do not depend on the order in
    # which the alerts arrived.
    detections = detections.sort_by([(c, "ascending") for c in _ORDER if c in detections.column_names])
    table = summary_features(detections)
    parts = [lasair_features(_connection(), detections, sky), curve_features(detections)]
    parts += [curve_features(detections, band) for band in BANDS]
    fits = band_fits(detections, sky)
    parts.append(bbb_features(fits, sky))
    for part in parts:
        table = table.join(part, keys="diaObjectId", join_type="left outer", coalesce_keys=True)
    return table


def sky_of(objects: pa.Table, context: pa.Table | None = None) -> pa.Table:
    """Each object's Galactic latitude ``glat`` and SFD reddening ``ebv`` at its position (``ra``, ``dec``), and
    its host's luminosity ``distance`` (Mpc) from the ``context`` rows (null without a host distance)."""
    ids = objects["diaObjectId"].cast(pa.int64())
    ra = np.asarray(pc.fill_null(objects["ra"].cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))
    dec = np.asarray(pc.fill_null(objects["dec"].cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))
    _, glat = galactic(ra, dec)
    distance = pa.nulls(len(ids), pa.float64())
    if context is not None and context.num_rows and "distance" in context.column_names:
        where = pc.index_in(ids, context["diaObjectId"].cast(pa.int64()))
        distance = pc.take(context["distance"].cast(pa.float64()), where)
    return pa.table(
        {
            "diaObjectId": ids,
            "glat": pa.array(glat, pa.float64(), from_pandas=True),
            "ebv": pa.array(ebv_sfd(ra, dec), pa.float64(), from_pandas=True),
            "distance": distance,
        }
    )


@functools.cache
def feature_columns() -> list[str]:
    """The names of the columns ``object_features`` and ``sky_of`` add to an object's row."""
    empty = pa.table(
        {
            "diaObjectId": pa.array([], pa.int64()),
            "midpointMjdTai": pa.array([], pa.float64()),
            "band": pa.array([], pa.string()),
            "psfFlux": pa.array([], pa.float64()),
            "psfFluxErr": pa.array([], pa.float64()),
            "reliability": pa.array([], pa.float64()),
        }
    )
    names = object_features(empty).column_names
    return [*names, "glat", "ebv"]
