"""Lasair-LSST's object features that Nightjar computes with Lasair's definitions (docs/features.md).

Input: every detection of the batch's objects (``diaObjectId, midpointMjdTai, band, psfFlux, psfFluxErr,
reliability``) and each object's ``sky`` row (``diaObjectId, ebv``, and the host's luminosity ``distance`` in Mpc
from the context, null without one). Output: one row per object with ``nSourcesGood``, ``nPosDiaSources``,
``nPosDiaSourcesNights``, ``jump1``, ``jump2``, ``absMag``, ``absMagMJD`` and the latest and penultimate pair
colours. One DuckDB pass computes everything but the pairs' temperatures, which are solved for all pairs at once
in NumPy (``pipelines.blackbody``).
"""

from __future__ import annotations

import functools

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.pipelines.blackbody import EXTINCTION_R, WAVELENGTH_UM, temperature_kk

GOOD_RELIABILITY = 0.5  # nSourcesGood counts detections with reliability above this
PAIR_MINUTES = 40.0  # two detections in different bands closer than this make a pair colour
JUMP_RECENT_DAYS = 10.0  # jump1/jump2: detections of the last 10 days ...
JUMP_BASELINE_DAYS = 70.0  # ... against the same band's detections 10 to 70 days before the latest
JUMP_MIN_BASELINE = 5
# Rubin's observing night (dayObs) starts at 12:00 UTC: MJD − 0.5, rounded down.
NIGHT_OFFSET_DAYS = 0.5

PAIR_PREFIXES = ("latestPair", "penultimatePair")
SKY_SCHEMA = pa.schema([("diaObjectId", pa.int64()), ("ebv", pa.float64()), ("distance", pa.float64())])


def _case(values: dict[str, float], column: str = "band") -> str:
    whens = " ".join(f"WHEN '{b}' THEN {v}" for b, v in values.items())
    return f"(CASE {column} {whens} END)"


@functools.cache
def _sql() -> str:
    order = _case({b: i for i, b in enumerate(WAVELENGTH_UM)})
    return f"""
        WITH d AS (
            SELECT x.diaObjectId, x.midpointMjdTai AS t, x.band, x.psfFlux AS f, x.reliability,
                   -- extinction-corrected flux: the Milky Way dimmed it by R_band * E(B-V) magnitudes
                   x.psfFlux * pow(10, 0.4 * coalesce({_case(EXTINCTION_R, "x.band")}, 0) * coalesce(s.ebv, 0))
                       AS ec,
                   s.distance
            FROM detections x LEFT JOIN sky s USING (diaObjectId)
        ), overall AS (
            SELECT diaObjectId,
                   max(t) AS tlast,
                   count(*) FILTER (WHERE reliability > {GOOD_RELIABILITY}) AS nSourcesGood,
                   count(*) FILTER (WHERE f > 0) AS nPosDiaSources,
                   count(DISTINCT floor(t - {NIGHT_OFFSET_DAYS})) FILTER (WHERE f > 0) AS nPosDiaSourcesNights,
                   max(ec) FILTER (WHERE f > 0) AS peakEcFlux,
                   arg_max(t, ec) FILTER (WHERE f > 0) AS absMagMJD,
                   any_value(distance) AS distance
            FROM d GROUP BY diaObjectId
        ), baseline AS (
            SELECT d.diaObjectId, d.band, avg(d.f) AS mean, stddev_samp(d.f) AS sd
            FROM d JOIN overall o USING (diaObjectId)
            WHERE d.t >= o.tlast - {JUMP_BASELINE_DAYS} AND d.t < o.tlast - {JUMP_RECENT_DAYS}
            GROUP BY d.diaObjectId, d.band HAVING count(*) >= {JUMP_MIN_BASELINE}
        ), band_jumps AS (
            SELECT d.diaObjectId, d.band, max(abs(d.f - b.mean) / b.sd) AS jump
            FROM d JOIN overall o USING (diaObjectId) JOIN baseline b USING (diaObjectId, band)
            WHERE d.t >= o.tlast - {JUMP_RECENT_DAYS} AND b.sd > 0
            GROUP BY d.diaObjectId, d.band
        ), jumps AS (
            SELECT diaObjectId,
                   max(jump) FILTER (WHERE k = 1) AS jump1,
                   max(jump) FILTER (WHERE k = 2) AS jump2
            FROM (SELECT *, row_number() OVER (PARTITION BY diaObjectId ORDER BY jump DESC, band) AS k
                  FROM band_jumps)
            GROUP BY diaObjectId
        ), seq AS (
            -- ties in time are ordered by band and flux, so that the pairs do not depend on arrival order
            SELECT *, lag(t) OVER w AS t0, lag(band) OVER w AS band0, lag(ec) OVER w AS ec0
            FROM d WINDOW w AS (PARTITION BY diaObjectId ORDER BY t, {order}, f)
        ), pairs AS (
            SELECT diaObjectId, t AS pairMjd,
                   -- blue minus red
                   CASE WHEN {order} > {_case({b: i for i, b in enumerate(WAVELENGTH_UM)}, "band0")}
                        THEN ec0 / ec ELSE ec / ec0 END AS ratio,
                   CASE WHEN {order} > {_case({b: i for i, b in enumerate(WAVELENGTH_UM)}, "band0")}
                        THEN band0 || '-' || band ELSE band || '-' || band0 END AS bands,
                   row_number() OVER (PARTITION BY diaObjectId ORDER BY t DESC) AS k
            FROM seq
            WHERE t0 IS NOT NULL AND band <> band0 AND (t - t0) * 1440 < {PAIR_MINUTES} AND f > 0 AND ec0 > 0
        )
        SELECT o.diaObjectId, o.nSourcesGood, o.nPosDiaSources, o.nPosDiaSourcesNights,
               j.jump1, j.jump2,
               CASE WHEN o.distance > 0 AND o.peakEcFlux > 0
                    THEN 31.4 - 2.5 * log10(o.peakEcFlux) - 5 * log10(o.distance * 1e5) END AS absMag,
               CASE WHEN o.distance > 0 THEN o.absMagMJD END AS absMagMJD,
               p1.pairMjd AS latestPairMJD, p1.ratio AS latestPairRatio, p1.bands AS latestPairColourBands,
               p2.pairMjd AS penultimatePairMJD, p2.ratio AS penultimatePairRatio,
               p2.bands AS penultimatePairColourBands
        FROM overall o
        LEFT JOIN jumps j USING (diaObjectId)
        LEFT JOIN (SELECT * FROM pairs WHERE k = 1) p1 USING (diaObjectId)
        LEFT JOIN (SELECT * FROM pairs WHERE k = 2) p2 USING (diaObjectId)
    """


def lasair_features(con: duckdb.DuckDBPyConnection, detections: pa.Table, sky: pa.Table | None = None) -> pa.Table:
    """The Lasair-LSST features of each object of ``detections`` (see the module's docstring), on ``con``."""
    if sky is None:
        sky = SKY_SCHEMA.empty_table()
    con.register("detections", detections)
    con.register("sky", sky.select(SKY_SCHEMA.names).cast(SKY_SCHEMA))
    try:
        table = con.sql(_sql()).to_arrow_table()
    finally:
        con.unregister("detections")
        con.unregister("sky")
    for prefix in PAIR_PREFIXES:
        ratio = table[f"{prefix}Ratio"]
        # each pair's two wavelengths by a lookup of its bands ("g-r"): no loop over rows
        blue = pc.utf8_slice_codeunits(table[f"{prefix}ColourBands"], 0, 1)
        red = pc.utf8_slice_codeunits(table[f"{prefix}ColourBands"], 2, 3)
        waves = pa.array(list(WAVELENGTH_UM.values()), pa.float64())
        names = pa.array(list(WAVELENGTH_UM), pa.string())
        blue_um = pc.take(waves, pc.index_in(blue, names)).to_numpy(zero_copy_only=False)
        red_um = pc.take(waves, pc.index_in(red, names)).to_numpy(zero_copy_only=False)
        r = np.asarray(pc.fill_null(ratio, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(r > 0, -2.5 * np.log10(np.where(r > 0, r, 1.0)), np.nan)
        temp = temperature_kk(r, np.nan_to_num(blue_um, nan=1.0), np.nan_to_num(red_um, nan=1.0))
        at = table.column_names.index(f"{prefix}Ratio")
        table = table.remove_column(at)
        table = table.add_column(at, f"{prefix}ColourMag", pa.array(mag, pa.float64(), from_pandas=True))
        table = table.append_column(f"{prefix}ColourTemp", pa.array(temp, pa.float64(), from_pandas=True))
    return table
