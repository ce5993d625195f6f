"""LSST alerts, decoded column by column, as the model's tables.

The model is LSST's own vocabulary: ``sources`` (the triggering diaSource), ``prv_sources`` (packet history),
``forced_sources``, ``objects`` (the diaObject), ``cutouts``, and for alerts of known solar-system objects
``ss_sources`` and ``ss_objects`` (``streams.sso``); every row carries ``_row``, the position of its
Kafka message in the batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from nightjar.streams.avro_columnar import RECORD, Decoded
from nightjar.streams.sso import sso_tables

ROW = "_row"
CUTOUT_FIELDS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")


def is_lsst(schema: dict) -> bool:
    """True if the Avro schema is an LSST alert's (it has a ``diaSource`` field)."""
    names = {f["name"] for f in schema.get("fields", [])}
    return "diaSource" in names


def _with_row(table: pa.Table, record_row: np.ndarray) -> pa.Table:
    """Replace ``_record`` (the alert within the decoded group) by ``_row`` (its message in the batch)."""
    rows = record_row[table[RECORD].to_numpy()] if table.num_rows else np.array([], dtype=np.int64)
    return table.drop_columns([RECORD]).append_column(ROW, pa.array(rows, pa.int64()))


def model_tables(decoded: Decoded, record_row: np.ndarray) -> dict[str, pa.Table]:
    """The model tables of one group of LSST alerts; ``record_row[i]`` is the message of decoded alert ``i``."""
    top = decoded.tables[""]
    n = top.num_rows
    source = decoded.tables["diaSource"]
    # diaSource is a required record: one row per alert, in alert order.
    if not np.array_equal(source[RECORD].to_numpy(), np.arange(n)):
        raise ValueError("every LSST alert must carry its diaSource")

    tables = {"sources": _with_row(source, record_row)}
    if "diaObject" in decoded.tables:
        obj = decoded.tables["diaObject"]
        recs = pa.array(obj[RECORD].to_numpy())
        obj = obj.append_column("lastDiaSourceId", source["diaSourceId"].take(recs))
        obj = obj.append_column("lastAlertMjdTai", source["midpointMjdTai"].take(recs))
        tables["objects"] = _with_row(obj, record_row)
    for name, table in (("prv_sources", "prvDiaSources"), ("forced_sources", "prvDiaForcedSources")):
        if table in decoded.tables:
            tables[name] = _with_row(decoded.tables[table], record_row)
    present = [c for c in CUTOUT_FIELDS if c in top.column_names]
    cutouts = top.select(present)
    cutouts = cutouts.append_column("diaSourceId", source["diaSourceId"]).append_column(
        "diaObjectId", source["diaObjectId"]
    )
    tables["cutouts"] = cutouts.append_column(ROW, pa.array(record_row[:n], pa.int64()))
    for name, table in sso_tables(decoded, source).items():
        tables[name] = _with_row(table, record_row)
    return tables
