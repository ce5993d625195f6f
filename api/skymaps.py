"""``/api/v1/skymaps``: add, list, read and remove gravitational-wave (GRB, neutrino) skymaps, and read their hits.

Anyone reads skymaps and their hits (``mma_area_hits``); power users and admins add and remove them. A new map is
checked (a HEALPix probability map, multi-order NUNIQ or flat, probabilities summing to 1), stored with its 50 %
and 90 % credible regions and matched over the lake's history before the answer; the live pipeline matches it from
its next batch. A bad map is a 400 and nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from nightjar.api import users
from nightjar.api.auth import Caller, require
from nightjar.api.users import User
from nightjar.catalogs import skymap_store, watch_store
from nightjar.catalogs.skymap import SkymapError, read_skymap
from nightjar.lake import mma_hits
from nightjar.pipelines.skymap_history import drop_skymap, ingest_skymap
from nightjar.storage import CatalogsHome, Home

MapId = Annotated[int, PathParam(ge=1, le=2**62)]
MAX_FITS = 200_000_000  # characters of base64 (a multi-order map is ~1 MB; a flat nside-2048 map ~400 MB)
Power = Annotated[User, Depends(require(users.POWER))]


class SkymapCreate(BaseModel):
    """A skymap to store (a HEALPix probability map of a gravitational-wave, GRB or neutrino event) and whether to match
    it over the lake's history now."""

    skymap_fits_base64: str = Field(
        min_length=1, max_length=MAX_FITS, description="The FITS skymap (multi-order NUNIQ or flat), base64."
    )
    event_id: str | None = Field(default=None, max_length=200, description="Default: the header's OBJECT.")
    event_time: datetime | None = Field(default=None, description="UTC; default: the header's DATE-OBS.")
    window_days: float = Field(default=skymap_store.DEFAULT_WINDOW_DAYS, gt=0, le=3650)
    classification: dict[str, float] | None = Field(default=None, description='e.g. {"BNS": 0.9}')
    properties: dict[str, float] | None = Field(default=None, description='e.g. {"HasNS": 0.99}')
    history: bool = Field(default=True, description="Match the lake's history now.")


def _described(lake: Home, info: skymap_store.SkymapInfo) -> dict[str, Any]:
    return {**asdict(info), "hits": mma_hits.rows_of_map(lake, info.id).num_rows}


def add_from_bytes(home: CatalogsHome, content: bytes, **options: Any) -> tuple[skymap_store.SkymapInfo, Any]:
    """Check and store a skymap given as FITS bytes (the API and the GCN notice consumer)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "skymap.fits"
        path.write_bytes(content)
        skymap = read_skymap(path)
    return ingest_skymap(home, skymap, **options)


def router(home: CatalogsHome, lake: Home | None = None) -> APIRouter:
    """The skymap routes: maps stored under ``home``, their hits in ``lake`` (None: the home's own lake)."""
    hits_in = watch_store.lake_for(home, lake)
    api = APIRouter(tags=["skymaps"])

    def found(map_id: int) -> skymap_store.SkymapInfo:
        try:
            return skymap_store.get_skymap(home, map_id)
        except SkymapError:
            raise HTTPException(status_code=404, detail=f"no skymap {map_id}") from None

    @api.post("/api/v1/skymaps", status_code=status.HTTP_201_CREATED)
    async def create_skymap(body: SkymapCreate, user: Power) -> dict[str, Any]:
        """Add a skymap; its hits over the lake's history are in the answer (``history``)."""
        try:
            content = base64.b64decode(body.skymap_fits_base64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(status_code=400, detail="skymap_fits_base64 is not base64") from None
        options: dict[str, Any] = {
            "event_id": body.event_id,
            "event_time": body.event_time,
            "window_days": body.window_days,
            "classification": body.classification,
            "properties": body.properties,
            "source": f"api:{user.name}",
            "history": body.history,
        }
        try:
            info, result = await run_in_threadpool(add_from_bytes, home, content, lake=hits_in, **options)
        except SkymapError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return {**_described(hits_in, info), "history": asdict(result) if result is not None else None}

    @api.get("/api/v1/skymaps")
    async def list_skymaps(user: Caller) -> list[dict[str, Any]]:
        """Every stored skymap, newest event first."""
        return [asdict(i) for i in await run_in_threadpool(skymap_store.list_skymaps, home)]

    @api.get("/api/v1/skymaps/{map_id}")
    async def get_skymap(map_id: MapId, user: Caller) -> dict[str, Any]:
        """One skymap: event, window, areas, class probabilities and its number of hits."""
        return await run_in_threadpool(_described, hits_in, found(map_id))

    @api.get("/api/v1/skymaps/{map_id}/hits")
    async def skymap_hits(
        map_id: MapId, user: Caller, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
    ) -> list[dict[str, Any]]:
        """The map's hits (``mma_area_hits``), densest first; ids as strings."""
        found(map_id)
        rows = await run_in_threadpool(mma_hits.rows_of_map, hits_in, map_id)
        rows = rows.sort_by([("probdens2", "descending")]).slice(0, limit)
        out = rows.to_pylist()
        for row in out:
            row["diaObjectId"], row["diaSourceId"] = str(row["diaObjectId"]), str(row["diaSourceId"])
        return out

    @api.delete("/api/v1/skymaps/{map_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_skymap(map_id: MapId, user: Power) -> None:
        """Remove a skymap and its hits."""
        found(map_id)
        await run_in_threadpool(drop_skymap, home, map_id, hits_in)

    return api
