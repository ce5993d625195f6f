"""``GET /api/v1/objects/{diaObjectId}`` (an object, its light curve, context, annotations and cutout links) and
``POST /api/v1/lightcurves`` (the light curves of many objects)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field

from nightjar.api.auth import Caller
from nightjar.api.ids import StrictId
from nightjar.api.lake_state import Lake
from nightjar.api.users import ANONYMOUS, User
from nightjar.lake import objects
from nightjar.lake.serving import Snapshot
from nightjar.records import to_records
from nightjar.sql import registry, watch_registry
from nightjar.sql.watch_views import viewer_of

INT64_MAX = 2**63 - 1
# Objects per light-curve request, by role (a role not listed gets the signed-in figure).
MAX_OBJECTS = {ANONYMOUS: 1000, "user": 10_000}
MAX_OBJECTS_SIGNED_IN = 100_000

ObjectId = Annotated[int, Path(ge=0, le=INT64_MAX, description="The diaObjectId (a 64-bit integer).")]


def cutout_links(request: Request, dia_source_id: int) -> dict[str, Any]:
    """URLs of an alert's three cutouts, as FITS and as PNG."""
    links: dict[str, Any] = {"diaSourceId": str(dia_source_id)}
    for kind in objects.CUTOUT_KINDS:
        url = str(request.url_for("cutout", diaSourceId=str(dia_source_id), kind=kind))
        links[kind] = {"fits": f"{url}?format=fits", "png": f"{url}?format=png"}
    return links


def context_payload(context: objects.Context) -> dict[str, Any] | None:
    """A stored context as JSON: the class row's fields plus ``matches``; None when not classified yet."""
    if context.row is None:
        return None
    row = to_records(context.row)[0]
    matches = context.matches.drop_columns(["diaObjectId"]) if context.matches.num_rows else context.matches
    row["matches"] = to_records(matches) if context.matches.num_rows else []
    return row


def object_payload(request: Request, snap: Snapshot, object_id: int, forced: bool = True) -> dict[str, Any] | None:
    """Everything about one object as JSON (IDs as strings), or None when the lake has no such object."""
    row = objects.object_row(snap.tables, object_id, snap.object_index())
    if row is None:
        return None
    curves = objects.light_curves(snap.tables, row, forced=forced)
    latest = objects.latest_alert_source(row, curves.detections)
    return {
        "diaObjectId": str(object_id),
        "object": to_records(row)[0],
        "lightcurve": {
            "detections": to_records(curves.detections.drop_columns(["diaObjectId"])),
            "forced": to_records(curves.forced.drop_columns(["diaObjectId"])) if curves.forced.num_rows else [],
        },
        "context": context_payload(objects.context_of(snap.tables, object_id)),
        "annotations": to_records(objects.annotations_of(snap.tables, object_id)),
        "tns": tns_payload(objects.tns_of(snap.tables, object_id)),
        "skymaps": to_records(objects.skymap_hits_of(snap.tables, object_id)),
        "cutouts": None if latest is None else cutout_links(request, latest),
    }


def tns_payload(match: Any) -> dict[str, Any] | None:
    """The object's TNS match (``crossmatch_tns``) as JSON, or None."""
    return None if match is None else to_records(match.drop_columns(["diaObjectId"]))[0]


def watch_hits(snap: Snapshot, metadata_url: str, user: User, object_id: int) -> dict[str, list[dict[str, Any]]]:
    """The object's watchlist and watchmap hits that ``user`` may see (as their queries of ``watchlist_hits`` and
    ``area_hits`` do), as JSON records keyed by table."""
    viewer = viewer_of(user.name, user.anonymous, user.is_admin)
    hidden: tuple[list[int], list[int]] = ([], [])
    if viewer is not None:
        eng = registry.engine(metadata_url)
        try:
            hidden = watch_registry.hidden_from(eng, viewer)
        finally:
            eng.dispose()
    found = objects.watch_hits_of(snap.tables, object_id, *hidden)
    return {
        table: to_records(rows.drop_columns([c for c in ("diaObjectId",) if c in rows.column_names]))
        for table, rows in found.items()
    }


def not_found(object_id: int) -> HTTPException:
    """The 404 for an object the lake does not hold."""
    return HTTPException(status_code=404, detail=f"no object {object_id} in the lake")


class LightCurvesRequest(BaseModel):
    """The objects whose light curves are asked for."""

    diaObjectIds: list[Annotated[StrictId, Field(ge=0, le=INT64_MAX)]] = Field(
        min_length=1, description="Object IDs (strings or integers); at most 1,000 for anonymous callers."
    )
    forced: bool = Field(default=True, description="Include forced photometry.")


class LightCurve(BaseModel):
    """An object's detections and forced photometry, by time."""

    diaObjectId: str
    detections: list[dict[str, Any]]
    forced: list[dict[str, Any]]


class LightCurvesResponse(BaseModel):
    """The light curves found, and the IDs not found."""

    lightcurves: list[LightCurve] = Field(description="One per known object, in the order asked.")
    missing: list[str] = Field(description="Requested IDs the lake does not have.")


def max_objects(role: str) -> int:
    """The most objects a call of ``/lightcurves`` may ask for in this role."""
    return MAX_OBJECTS.get(role, MAX_OBJECTS_SIGNED_IN)


def router() -> APIRouter:
    """The routes of objects: one object with everything the lake knows of it, and the light curves of many."""
    api = APIRouter(prefix="/api/v1", tags=["objects"])

    @api.get("/objects/{diaObjectId}", summary="One object: row, light curve, context, annotations, cutouts")
    def get_object(diaObjectId: ObjectId, request: Request, snap: Lake, user: Caller) -> dict[str, Any]:
        """The object's ``objects`` row, its light curve (detections from ``sources``, forced photometry from
        ``forced_sources``, by time), its stored context (class and ranked catalogue matches; null until it is
        classified), its annotations, its watchlist and watchmap hits (those of lists the caller may see) and links to
        the cutouts of its latest alert. 64-bit IDs are strings."""
        payload = object_payload(request, snap, diaObjectId)
        if payload is None:
            raise not_found(diaObjectId)
        payload.update(watch_hits(snap, request.app.state.settings.metadata_url, user, diaObjectId))
        return payload

    @api.post("/lightcurves", response_model=LightCurvesResponse, summary="Light curves of many objects")
    def lightcurves(body: LightCurvesRequest, snap: Lake, user: Caller) -> LightCurvesResponse:
        """Detections and forced photometry of up to 1,000 objects per call anonymously (more with a token)."""
        cap = max_objects(user.role)
        if len(body.diaObjectIds) > cap:
            raise HTTPException(
                status_code=400,
                detail=f"at most {cap} objects per call for the {user.role} role, not {len(body.diaObjectIds)}",
            )
        asked = list(dict.fromkeys(body.diaObjectIds))
        rows = objects.objects_rows(snap.tables, asked, ["ra", "dec"], snap.object_index())
        curves = objects.light_curves(snap.tables, rows, forced=body.forced)
        known = set(rows["diaObjectId"].to_pylist())
        by_object = {
            name: _split(table) for name, table in (("detections", curves.detections), ("forced", curves.forced))
        }
        out = [
            LightCurve(
                diaObjectId=str(i),
                detections=by_object["detections"].get(i, []),
                forced=by_object["forced"].get(i, []),
            )
            for i in asked
            if i in known
        ]
        return LightCurvesResponse(lightcurves=out, missing=[str(i) for i in asked if i not in known])

    return api


def _split(table: Any) -> dict[int, list[dict[str, Any]]]:
    """Rows grouped by diaObjectId (the table is sorted by it), without the id column."""
    if table.num_rows == 0:
        return {}
    ids = table["diaObjectId"].to_numpy()
    records = to_records(table.drop_columns(["diaObjectId"]))
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size]
    return {int(ids[s]): records[s:e] for s, e in zip(starts, ends, strict=True)}
