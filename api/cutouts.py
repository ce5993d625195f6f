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

INT64_MAX = 2**63 - 1
FITS_TYPE = "application/fits"


def router() -> APIRouter:
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
        stamps = await run_in_threadpool(snap.cutouts, diaSourceId)
        if stamps is None:
            raise HTTPException(status_code=404, detail=f"no cutouts for diaSourceId {diaSourceId} in the lake")
        data = stamps.get(CUTOUT_KINDS[kind])
        if data is None:
            raise HTTPException(status_code=404, detail=f"alert {diaSourceId} has no {kind} cutout")
        name = f"{diaSourceId}-{kind}"
        if format == "fits":
            headers = {"Content-Disposition": f'inline; filename="{name}.fits"'}
            return Response(data, media_type=FITS_TYPE, headers=headers)
        try:
            png = await run_in_threadpool(render_png, data, scale)
        except StampError as exc:
            raise HTTPException(
                status_code=422, detail=f"cannot render {kind} cutout of {diaSourceId}: {exc}"
            ) from None
        return Response(png, media_type="image/png", headers={"Content-Disposition": f'inline; filename="{name}.png"'})

    return api
