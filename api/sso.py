"""``GET /api/v1/sso/{ssObjectId}``: a known solar-system object's MPC orbit and its detections in the lake."""

from __future__ import annotations

from typing import Annotated, Any

import pyarrow as pa
import pyarrow.dataset as ds
from fastapi import APIRouter, HTTPException, Path

from nightjar import paths
from nightjar.api.lake_state import Lake
from nightjar.records import to_records

INT64_MAX = 2**63 - 1
SsObjectId = Annotated[int, Path(ge=0, le=INT64_MAX, description="The ssObjectId (a 64-bit integer).")]


def _rows(tables: dict[str, ds.Dataset], table: str, ss_object_id: int, order: str) -> pa.Table | None:
    dataset = tables.get(table)
    if dataset is None or "ssObjectId" not in dataset.schema.names:
        return None
    rows = dataset.to_table(filter=ds.field("ssObjectId") == pa.scalar(ss_object_id, pa.int64()))
    return rows.sort_by([(order, "ascending")]) if rows.num_rows and order in rows.column_names else rows


def sso_payload(tables: dict[str, ds.Dataset], ss_object_id: int) -> dict[str, Any] | None:
    """The object's orbit (its newest ``ss_objects`` row, null when the alerts carried none) and its
    ``ss_sources`` rows by time, as JSON (64-bit IDs as strings); None when the lake has neither."""
    orbit = _rows(tables, paths.SS_OBJECTS, ss_object_id, "lastAlertMjdTai")
    sources = _rows(tables, paths.SS_SOURCES, ss_object_id, "midpointMjdTai")
    if (orbit is None or orbit.num_rows == 0) and (sources is None or sources.num_rows == 0):
        return None
    return {
        "ssObjectId": str(ss_object_id),
        "orbit": to_records(orbit.slice(orbit.num_rows - 1))[0] if orbit is not None and orbit.num_rows else None,
        "sources": to_records(sources) if sources is not None and sources.num_rows else [],
    }


def router() -> APIRouter:
    """The route of a solar-system object."""
    api = APIRouter(prefix="/api/v1", tags=["solar system"])

    @api.get("/sso/{ssObjectId}", summary="A solar-system object: its MPC orbit and its detections")
    def get_sso(ssObjectId: SsObjectId, snap: Lake) -> dict[str, Any]:
        """The known minor planet's MPC orbit (``ss_objects``, from its newest alert) and every ``ss_sources`` row
        (the ssSource record of each of its alerts, with the detection's time, position, band and flux), by
        time. 64-bit IDs are strings."""
        payload = sso_payload(dict(snap.tables), ssObjectId)
        if payload is None:
            raise HTTPException(status_code=404, detail=f"no solar-system object {ssObjectId} in the lake")
        return payload

    return api
