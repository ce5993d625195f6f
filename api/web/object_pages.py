"""Object pages (``/objects/{diaObjectId or ZTF name}``), their cutout images, the object-id box and cone search.

The object page is the API's ``GET /api/v1/objects/{id}`` rendered: the same ``object_payload`` (indexed object
look-up, light curve read from the files near the object's position only) and the same watch-hit visibility.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from nightjar.api import cone, ids
from nightjar.api.cutouts import stamp_png
from nightjar.api.lake_state import Lake
from nightjar.api.objects import INT64_MAX, object_payload, watch_hits
from nightjar.api.web.session import PageUser
from nightjar.api.web.templating import render

MATCH_COLUMNS = [
    "rank",
    "catalogue_table_name",
    "catalogue_object_id",
    "catalogue_object_type",
    "classification",
    "separationArcsec",
    "physical_separation_kpc",
    "z",
    "photoZ",
    "Mag",
]


def external_links(ra: float, dec: float) -> list[tuple[str, str]]:
    """Other services' pages at a position (names and URLs)."""
    pos = f"{ra:.6f} {dec:+.6f}"
    return [
        ("Aladin", f"https://aladin.cds.unistra.fr/AladinLite/?target={quote(pos)}&fov=0.05"),
        (
            "SIMBAD",
            f"https://simbad.cds.unistra.fr/simbad/sim-coo?Coord={quote(pos)}&Radius=10&Radius.unit=arcsec",
        ),
        ("NED", f"https://ned.ipac.caltech.edu/conesearch?coordinates={quote(f'{ra}d {dec}d')}&radius=0.17"),
        ("TNS", f"https://www.wis-tns.org/search?ra={ra}&decl={dec}&radius=10&coords_unit=arcsec"),
        ("Legacy Survey", f"https://www.legacysurvey.org/viewer?ra={ra}&dec={dec}&layer=ls-dr10&zoom=16"),
    ]


def resolve_name(name: str) -> int:
    """A diaObjectId or ZTF name as the object's id; 404 for anything else."""
    try:
        object_id = ids.object_id(name)
    except ValueError:
        raise HTTPException(
            status_code=404, detail=f"{name!r} is neither a diaObjectId nor a ZTF object name"
        ) from None
    if not 0 <= object_id <= INT64_MAX:
        raise HTTPException(status_code=404, detail=f"no object {name}")
    return object_id


def router() -> APIRouter:
    """The portal's object page, its cutout images, the search box's answer and the cone-search page."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/objects/{name}")
    def object_page(name: str, request: Request, snap: Lake, user: PageUser) -> Response:
        object_id = resolve_name(name)
        payload = object_payload(request, snap, object_id)
        if payload is None:
            raise HTTPException(status_code=404, detail=f"no object {name} in the lake")
        hits = watch_hits(snap, request.app.state.settings.metadata_url, user, object_id)
        row: dict[str, Any] = payload["object"]
        context = payload["context"]
        matches = context["matches"] if context else []
        shown = [c for c in MATCH_COLUMNS if any(c in m for m in matches)]
        ztf_name = row.get("objectId") if isinstance(row.get("objectId"), str) else None
        return render(
            request,
            "object.html",
            {
                "user": user,
                "title": f"Object {ztf_name or object_id}",
                "object_id": str(object_id),
                "ztf_name": ztf_name,
                "row": row,
                "lightcurve": payload["lightcurve"],
                "detections": len(payload["lightcurve"]["detections"]),
                "forced": len(payload["lightcurve"]["forced"]),
                "context": context,
                "matches": matches,
                "match_columns": shown,
                "annotations": payload["annotations"],
                "hits": hits,
                "tns": payload["tns"],
                "skymaps": payload["skymaps"],
                "cutout_source": payload["cutouts"]["diaSourceId"] if payload["cutouts"] else None,
                "links": external_links(float(row["ra"]), float(row["dec"])),
                "api_url": f"/api/v1/objects/{object_id}",
            },
        )

    @pages.get("/cutouts/{diaSourceId}/{kind}.png")
    async def cutout_image(
        diaSourceId: Annotated[int, Path(ge=0, le=INT64_MAX)],
        kind: Literal["science", "template", "difference"],
        snap: Lake,
        user: PageUser,
    ) -> Response:
        png = await run_in_threadpool(stamp_png, snap, diaSourceId, kind, 4)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @pages.get("/search")
    async def search(user: PageUser, object: Annotated[str, Query(max_length=100)] = "") -> Response:
        return RedirectResponse(f"/objects/{quote(object.strip(), safe='')}", status_code=303)

    @pages.get("/cone")
    def cone_page(
        request: Request,
        snap: Lake,
        user: PageUser,
        ra: Annotated[float, Query(ge=0, le=360)],
        dec: Annotated[float, Query(ge=-90, le=90)],
        radius_arcsec: Annotated[float, Query(gt=0, le=cone.MAX_RADIUS_ARCSEC)] = 5.0,
    ) -> Response:
        found = cone.search(snap, ra, dec, radius_arcsec).to_pylist()
        for row in found:
            row["diaObjectId"] = str(row["diaObjectId"])
        context = {"user": user, "title": "Cone search", "ra": ra, "dec": dec, "radius": radius_arcsec, "rows": found}
        return render(request, "cone.html", context)

    return pages
