"""``GET /api/v1/cutouts/{diaSourceId}/{kind}``: an alert's science, template or difference stamp, as stored
(FITS) or rendered (PNG)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from nightjar.api.auth import Caller
from nightjar.api.lake_state import Lake
from nightjar.api.stamps import StampError, render_png
from nightjar.lake.objects import CUTOUT_KINDS
from nightjar.lake.serving import Snapshot

INT64_MAX = 2**63 - 1
FITS_TYPE = "application/fits"


def stamp_bytes(snap: Snapshot, dia_source_id: int, kind: str) -> bytes:
    """An alert's stamp as stored (FITS bytes); a 404 when the lake has no such cutout."""
    stamps = snap.cutouts(dia_source_id)
    if stamps is None:
        raise HTTPException(status_code=404, detail=f"no cutouts for diaSourceId {dia_source_id} in the lake")
    data = stamps.get(CUTOUT_KINDS[kind])
    if data is None:
        raise HTTPException(status_code=404, detail=f"alert {dia_source_id} has no {kind} cutout")
    return data


def stamp_png(snap: Snapshot, dia_source_id: int, kind: str, scale: int = 1) -> bytes:
    """An alert's stamp rendered as a PNG (the API's ``format=png`` and the portal's images); 404 or 422."""
    data = stamp_bytes(snap, dia_source_id, kind)
    try:
        return render_png(data, scale)
    except StampError as exc:
        raise HTTPException(status_code=422, detail=f"cannot render {kind} cutout of {dia_source_id}: {exc}") from None


def router() -> APIRouter:
    """The route of an alert's cutouts, as FITS or PNG."""
    api = APIRouter(prefix="/api/v1", tags=["cutouts"])

    @api.get(
        "/cutouts/{diaSourceId}/{kind}",
        name="cutout",
        summary="One cutout of an alert, FITS or PNG",
        response_class=Response,
        responses={200: {"content": {FITS_TYPE: {}, "image/png": {}}}, 404: {"description": "No such cutout"}},
    )
    async def cutout(
        diaSourceId: Annotated[int, Path(ge=0, le=INT64_MAX, description="The alert's diaSourceId.")],
        kind: Annotated[Literal["science", "template", "difference"], Path(description="Which stamp.")],
        snap: Lake,
        user: Caller,
        format: Annotated[Literal["fits", "png"], Query(description="FITS bytes as stored, or a PNG.")] = "fits",
        scale: Annotated[int, Query(ge=1, le=8, description="PNG only: pixels per stamp pixel.")] = 1,
    ) -> Response:
        """The stamp as the alert carried it (``format=fits``), or rendered with a zscale interval and an asinh
        stretch (``format=png``, greyscale, north up)."""
        name = f"{diaSourceId}-{kind}"
        if format == "fits":
            data = await run_in_threadpool(stamp_bytes, snap, diaSourceId, kind)
            headers = {"Content-Disposition": f'inline; filename="{name}.fits"'}
            return Response(data, media_type=FITS_TYPE, headers=headers)
        png = await run_in_threadpool(stamp_png, snap, diaSourceId, kind, scale)
        return Response(png, media_type="image/png", headers={"Content-Disposition": f'inline; filename="{name}.png"'})

    return api
