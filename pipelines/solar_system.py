"""Solar-system objects in the lake and in the batch's views: the alerts' ``ss_sources`` rows are appended (one per
alert, by ``diaSourceId``), their MPC orbits upserted into ``ss_objects`` (the newest alert's orbit wins)."""

from __future__ import annotations

import pyarrow as pa

from nightjar import paths
from nightjar.lake import commit
from nightjar.lake.keys import first_per_key, latest_per_key
from nightjar.storage import Home
from nightjar.streams.decode import ROW, DecodedBatch

ORDER = "lastAlertMjdTai"


def sso_rows(batch: DecodedBatch) -> dict[str, pa.Table]:
    """The batch's ``ss_sources`` (one per diaSourceId) and ``ss_objects`` (one per ssObjectId, the newest)
    rows, without their message index; tables the batch has no rows for are left out."""
    out = {}
    if batch.ss_sources.num_rows:
        out[paths.SS_SOURCES] = first_per_key(batch.ss_sources.drop_columns([ROW]), "diaSourceId")
    if batch.ss_objects.num_rows:
        out[paths.SS_OBJECTS] = latest_per_key(batch.ss_objects.drop_columns([ROW]), "ssObjectId", ORDER)
    return out


def commit_sso(home: Home, batch: DecodedBatch, txns: dict[str, int]) -> None:
    """Write the batch's solar-system rows (exactly once per batch, as every lake write)."""
    rows = sso_rows(batch)
    if paths.SS_SOURCES in rows:
        commit.append(home, paths.SS_SOURCES, rows[paths.SS_SOURCES], txns)
    if paths.SS_OBJECTS in rows:
        commit.upsert(home, paths.SS_OBJECTS, rows[paths.SS_OBJECTS], txns, order=ORDER)
