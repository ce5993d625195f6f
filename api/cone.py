"""``GET /api/v1/cone``: objects within a radius of a position, from the ``hpx29``-sorted objects table."""

from __future__ import annotations

from typing import Annotated, Literal

import pyarrow as pa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from nightjar.api.auth import Caller
from nightjar.api.lake_state import Lake
from nightjar.lake.serving import Snapshot

MAX_RADIUS_ARCSEC = 1000.0
Mode = Literal["nearest", "all", "count"]


class ConeObject(BaseModel):
    """An object within the cone."""

    diaObjectId: str = Field(description="64-bit ID, as a string.")
    ra: float
    dec: float
    separation: float = Field(description="Distance from the cone's centre, arcsec.")


class ConeResult(BaseModel):
    """The cone searched and the objects found in it."""

    ra: float
    dec: float
    radius_arcsec: float
    mode: Mode
    count: int = Field(description="Objects within the radius.")
    objects: list[ConeObject] = Field(description="Nearest first; one for 'nearest', none for 'count'.")


def search(snap: Snapshot, ra: float, dec: float, radius: float) -> pa.Table:
    """Objects (``diaObjectId``, ``ra``, ``dec``, ``sep_arcsec``) within ``radius`` arcsec, nearest first."""
    found = snap.cone(ra, dec, radius, ["diaObjectId", "ra", "dec"])
    return found.select(["diaObjectId", "ra", "dec", "sep_arcsec"]).sort_by([("sep_arcsec", "ascending")])


def router() -> APIRouter:
    """The cone-search route over the objects table."""
    api = APIRouter(prefix="/api/v1", tags=["objects"])

    @api.get("/cone", response_model=ConeResult, summary="Cone search over objects")
    def cone(
        snap: Lake,
        user: Caller,
        ra: Annotated[float, Query(ge=0, le=360, description="Right ascension of the centre, degrees.")],
        dec: Annotated[float, Query(ge=-90, le=90, description="Declination of the centre, degrees.")],
        radius_arcsec: Annotated[
            float, Query(gt=0, le=MAX_RADIUS_ARCSEC, description="Radius in arcseconds (at most 1000).")
        ] = 5.0,
        mode: Annotated[Mode, Query(description="nearest: the closest object; all: every one; count: how many.")] = (
            "all"
        ),
    ) -> ConeResult:
        """The objects whose position lies within ``radius_arcsec`` of (ra, dec), nearest first.

        The radius is named as in exports and the SQL function ``in_cone`` (Lasair's own cone, at
        ``/lasair/api/cone/``, keeps Lasair's ``radius``). Reads only the row groups of the objects table whose
        HEALPix range meets the cone.
        """
        found = search(snap, ra, dec, radius_arcsec)
        rows = [
            ConeObject(diaObjectId=str(i), ra=r, dec=d, separation=s)
            for i, r, d, s in zip(*(found[c].to_pylist() for c in found.column_names), strict=True)
        ]
        kept = rows[:1] if mode == "nearest" else [] if mode == "count" else rows
        return ConeResult(ra=ra, dec=dec, radius_arcsec=radius_arcsec, mode=mode, count=len(rows), objects=kept)

    return api
