"""ZTF alerts, decoded column by column, in the same tables as LSST's.

The mapping (every ZTF column is kept under its own name; these LSST-named columns are added):

============================  =========================================================================
LSST column                    from ZTF
============================  =========================================================================
``diaSourceId``                ``candid``
``diaObjectId``                ``objectId`` as an int64: 2**62 + YY·26**7 + the 7 letters in base 26
                               (``ZTF18abcdefg``); the string ``objectId`` is kept too
``midpointMjdTai``             ``jd − 2400000.5``
``band``                       ``fid`` 1, 2, 3 → ``g``, ``r``, ``i``
``psfFlux``, ``psfFluxErr``    nJy from ``magpsf``/``sigmapsf`` (AB: f = 10**((31.4 − m)/2.5)), negative
                               when ``isdiffpos`` is ``f``/``0``
``reliability``                ``rb``: the real-bogus score every packet carries for every detection, in
                               ``candidate`` and ``prv_candidates`` alike (``drb``, the deep-learning
                               score, is in ``candidate`` only: it describes the alert and is a column of
                               the object, from its newest alert)
``isNegative``                 ``isdiffpos`` is ``f``/``0``
============================  =========================================================================

The object's ``nDiaSources`` is not taken from the packet (whose ``prv_candidates`` hold 30 days): it is set,
like ``nSources``, from the light curve the lake holds (``pipelines.object_rows.merge_objects``).

History: ``prv_candidates`` with a ``candid`` are earlier detections (``prv_sources``); those without are
upper limits, kept in ``forced_sources`` with ``kind = 'upper_limit'`` and ``diffmaglim`` (and no position: the
packet gives none, and the alert's own position would make the row depend on which alert brought it). ``fp_hists`` are
forced photometry (``kind = 'forced_phot'``), ``psfFlux`` = ``forcediffimflux``·10**((31.4 − magzpsci)/2.5) nJy.
Cutouts are ZTF's gzipped FITS stamps (``stampData``). A detection's ``sources`` row keeps the fields that both
``candidate`` and ``prv_candidates`` carry; the fields only the alert's ``candidate`` has (``drb``, ``ndethist``,
PS1 and Gaia neighbours...) are columns of the object, from its newest alert. ZTF's history copy of a detection is
not its candidate (floats rounded to 6 digits, ``isdiffpos`` ``1`` for ``t``, other ``magzpscirms``): the lake
keeps the candidate of every detection whose alert it received, whichever copy arrived first
(``pipelines.lake_write.late_alerts``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.streams.avro_columnar import RECORD, Decoded

ROW = "_row"
JD_MJD = 2400000.5
ZTF_ID_FLAG = 1 << 62
LETTERS = 7
BANDS = pa.array([None, "g", "r", "i"], pa.string())
MISSING_FLUX = -99999.0
# The fields of ZTF's ``candidate`` that ``prv_candidate`` lacks in every schema version (pre-3.0 to 4.02).
ALERT_ONLY = frozenset(
    [
        "sgmag1",
        "srmag1",
        "simag1",
        "szmag1",
        "sgscore1",
        "distpsnr1",
        "ndethist",
        "ncovhist",
        "jdstarthist",
        "jdendhist",
        "tooflag",
        "objectidps1",
        "objectidps2",
        "sgmag2",
        "srmag2",
        "simag2",
        "szmag2",
        "sgscore2",
        "distpsnr2",
        "objectidps3",
        "sgmag3",
        "srmag3",
        "simag3",
        "szmag3",
        "sgscore3",
        "distpsnr3",
        "nmtchps",
        "rfid",
        "jdstartref",
        "jdendref",
        "nframesref",
        "dsnrms",
        "ssnrms",
        "dsdiff",
        "nmatches",
        "zpclrcov",
        "zpmed",
        "clrmed",
        "clrrms",
        "neargaia",
        "neargaiabright",
        "maggaia",
        "maggaiabright",
        "exptime",
        "drb",
        "drbversion",
    ]
)


def is_ztf(schema: dict) -> bool:
    """True if the Avro schema is a ZTF alert's (it has ``objectId`` and ``candidate``)."""
    names = {f["name"] for f in schema.get("fields", [])}
    return {"objectId", "candidate"} <= names


def object_ids(names: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids of ZTF object names and a mask of the well-formed ones (``ZTF`` + 2 digits + 7 letters)."""
    n = len(names)
    lengths = pc.binary_length(names).fill_null(0).to_numpy(zero_copy_only=False)
    good = lengths == 12
    ids = np.zeros(n, dtype=np.int64)
    if not good.any():
        return ids, good
    fixed = pc.if_else(pa.array(good), names, pa.scalar("ZTF00aaaaaaa")).cast(pa.binary())
    chars = np.frombuffer(fixed.buffers()[2], dtype=np.uint8)[: 12 * n].reshape(n, 12)
    digits = chars[:, 3:5].astype(np.int64) - ord("0")
    letters = chars[:, 5:].astype(np.int64) - ord("a")
    good &= (chars[:, :3] == np.frombuffer(b"ZTF", np.uint8)).all(axis=1)
    good &= ((digits >= 0) & (digits <= 9)).all(axis=1) & ((letters >= 0) & (letters < 26)).all(axis=1)
    value = digits[:, 0] * 10 + digits[:, 1]
    for j in range(LETTERS):
        value = value * 26 + letters[:, j]
    ids[good] = ZTF_ID_FLAG + value[good]
    return ids, good


def _flux(mag: pa.ChunkedArray | pa.Array, negative: np.ndarray) -> np.ndarray:
    m = np.asarray(pc.fill_null(mag, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    flux = 10 ** ((31.4 - m) / 2.5)
    return np.where(negative, -flux, flux)


def _negative(isdiffpos: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.is_in(isdiffpos, pa.array(["f", "0"])).fill_null(False).to_numpy(zero_copy_only=False))


def _detections(table: pa.Table, obj_ids: np.ndarray, object_names: pa.Array, record_row: np.ndarray) -> pa.Table:
    """Candidate rows with the LSST-named columns added."""
    recs = table[RECORD].to_numpy()
    negative = _negative(table["isdiffpos"])
    flux = _flux(table["magpsf"], negative)
    sigma = np.asarray(pc.fill_null(table["sigmapsf"], np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    added = {
        "diaSourceId": table["candid"],
        "diaObjectId": pa.array(obj_ids[recs], pa.int64()),
        "objectId": object_names.take(pa.array(recs)),
        "midpointMjdTai": pc.subtract(table["jd"], JD_MJD),
        "band": BANDS.take(pc.cast(table["fid"], pa.int64())),
        "psfFlux": pa.array(flux.astype(np.float32), pa.float32(), from_pandas=True),
        "psfFluxErr": pa.array(np.abs(flux * sigma * np.log(10) / 2.5).astype(np.float32), from_pandas=True),
        "reliability": pc.cast(table["rb"], pa.float32()),
        "isNegative": pa.array(negative),
    }
    out = table.drop_columns([c for c in added if c in table.column_names] + [RECORD])
    for name, values in added.items():
        out = out.append_column(name, values)
    return out.append_column(ROW, pa.array(record_row[recs], pa.int64()))


def _forced(
    part: pa.Table,
    kind: str,
    flux: pa.Array,
    flux_err: pa.Array,
    obj_ids: np.ndarray,
    object_names: pa.Array,
    record_row: np.ndarray,
) -> pa.Table:
    """``forced_sources`` rows of one kind (``upper_limit`` or ``forced_phot``) from ZTF history rows, which carry
    ``jd``, ``fid``, ``diffmaglim`` and ``pid``; ``flux`` and ``flux_err`` are their fluxes in nJy."""
    recs = part[RECORD].to_numpy()
    return pa.table(
        {
            "diaObjectId": pa.array(obj_ids[recs], pa.int64()),
            "objectId": object_names.take(pa.array(recs)),
            "kind": pa.repeat(pa.scalar(kind, pa.string()), len(recs)),
            "ra": pa.nulls(len(recs), pa.float64()),  # the packet gives no position for it
            "dec": pa.nulls(len(recs), pa.float64()),
            "midpointMjdTai": pc.subtract(part["jd"], JD_MJD),
            "band": BANDS.take(pc.cast(part["fid"], pa.int64())),
            "psfFlux": flux,
            "psfFluxErr": flux_err,
            "diffmaglim": part["diffmaglim"],
            "pid": part["pid"],
            ROW: pa.array(record_row[recs], pa.int64()),
        }
    )


def model_tables(decoded: Decoded, record_row: np.ndarray) -> tuple[dict[str, pa.Table], np.ndarray]:
    """The model tables of one group of ZTF alerts, and the alerts whose objectId is malformed."""
    top = decoded.tables[""]
    names = top["objectId"].combine_chunks() if isinstance(top["objectId"], pa.ChunkedArray) else top["objectId"]
    obj_ids, good = object_ids(names)
    candidate = decoded.tables["candidate"]
    prv = decoded.tables.get("prv_candidates")
    # A detection's row holds the fields every packet carries for it, whether it arrives as the alert's
    # candidate or in a later packet's history, so that what is stored does not depend on arrival order; the
    # candidate-only fields (drb, PS1 and Gaia neighbours, ndethist...) describe the alert and go to its object.
    if prv is not None and prv.num_columns > 1:
        shared = [c for c in candidate.column_names if c in prv.column_names]
    else:  # a writer schema without packet history (a re-serialised stream): ZTF's own split of the fields
        shared = [c for c in candidate.column_names if c not in ALERT_ONLY]
    alert_only = [c for c in candidate.column_names if c not in shared]
    sources = _detections(candidate.select(shared), obj_ids, names, record_row)
    tables = {"sources": sources}

    n = top.num_rows
    forced_parts = []
    if prv is not None and prv.num_rows:
        detected = pc.is_valid(prv["candid"])
        earlier = prv.filter(detected)
        tables["prv_sources"] = _detections(earlier, obj_ids, names, record_row)
        limits = prv.filter(pc.invert(detected))
        none = pa.nulls(limits.num_rows, pa.float32())
        forced_parts.append(_forced(limits, "upper_limit", none, none, obj_ids, names, record_row))
    fp = decoded.tables.get("fp_hists")
    if fp is not None and fp.num_rows:
        raw = np.asarray(pc.fill_null(fp["forcediffimflux"], np.nan).to_numpy(zero_copy_only=False), np.float64)
        err = np.asarray(pc.fill_null(fp["forcediffimfluxunc"], np.nan).to_numpy(zero_copy_only=False), np.float64)
        zp = np.asarray(pc.fill_null(fp["magzpsci"], np.nan).to_numpy(zero_copy_only=False), np.float64)
        scale = 10 ** ((31.4 - zp) / 2.5)
        raw[raw == MISSING_FLUX] = np.nan
        err[err == MISSING_FLUX] = np.nan
        flux = pa.array((raw * scale).astype(np.float32), from_pandas=True)
        flux_err = pa.array((err * scale).astype(np.float32), from_pandas=True)
        forced_parts.append(_forced(fp, "forced_phot", flux, flux_err, obj_ids, names, record_row))
    if forced_parts:
        tables["forced_sources"] = pa.concat_tables(forced_parts)

    objects = pa.table(
        {
            "diaObjectId": pa.array(obj_ids, pa.int64()),
            "objectId": names,
            "ra": sources["ra"],
            "dec": sources["dec"],
            "lastDiaSourceId": sources["diaSourceId"],
            "lastAlertMjdTai": sources["midpointMjdTai"],
            **{c: candidate[c] for c in alert_only if c not in ("ra", "dec", "jd", RECORD)},
            ROW: pa.array(record_row[:n], pa.int64()),
        }
    )
    tables["objects"] = objects
    cutouts = {"diaSourceId": sources["diaSourceId"], "diaObjectId": pa.array(obj_ids, pa.int64())}
    for field in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
        stamp = decoded.tables.get(field)
        values = pa.nulls(n, pa.binary())
        if stamp is not None and stamp.num_rows:
            index = np.full(n, -1, dtype=np.int64)
            index[stamp[RECORD].to_numpy()] = np.arange(stamp.num_rows)
            values = stamp["stampData"].take(pa.array(index, mask=index < 0))
        cutouts[field] = values
    cutouts[ROW] = pa.array(record_row[:n], pa.int64())
    tables["cutouts"] = pa.table(cutouts)
    return tables, ~good
