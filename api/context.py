"""Context: ``GET /api/v1/context/objects/{diaObjectId}`` (the stored class and ranked catalogue matches) and
``GET /api/v1/context/position`` (a live classification of any position against the installed catalogues)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from nightjar.api.auth import Caller
from nightjar.api.lake_state import Lake
from nightjar.api.objects import ObjectId, context_payload, not_found
from nightjar.catalogs.report import context_report
from nightjar.lake import objects
from nightjar.settings import Settings
from nightjar.storage import StorageError

log = logging.getLogger(__name__)


def position_report(settings: Settings, ra: float, dec: float, catalogs: list[str] | None) -> dict[str, Any]:
    """The live context of a position; an unknown catalogue name is a 400, catalogues out of reach a 503."""
    try:
        return context_report(settings, ra, dec, catalogs or None)
    except StorageError as exc:  # the server's catalogue store (NIGHTJAR_CATALOGS_URI), not the caller's fault
        log.error("context of a position: %s", exc)  # the store's address and error stay in the operator's log
        raise HTTPException(status_code=503, detail="the context catalogues are out of reach") from None
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise HTTPException(status_code=400, detail=str(exc).strip("'\"")) from None


def router() -> APIRouter:
    """The routes of context: an object's stored context, and a position classified now."""
    api = APIRouter(prefix="/api/v1/context", tags=["context"])

    @api.get("/objects/{diaObjectId}", summary="The stored context of an object")
    def object_context(diaObjectId: ObjectId, snap: Lake, user: Caller) -> dict[str, Any]:
        """The object's Sherlock-style class, best match and every ranked catalogue match, as the pipeline
        stored them. 404 when the object is unknown or has not been classified yet."""
        stored = context_payload(objects.context_of(snap.tables, diaObjectId))
        if stored is not None:
            return stored
        if objects.object_row(snap.tables, diaObjectId, snap.object_index()) is None:
            raise not_found(diaObjectId)
        raise HTTPException(status_code=404, detail=f"object {diaObjectId} has no context yet")

    @api.get("/position", summary="Classify a position against the catalogues")
    def position_context(
        request: Request,
        user: Caller,
        ra: Annotated[float, Query(ge=0, le=360, description="Right ascension, degrees.")],
        dec: Annotated[float, Query(ge=-90, le=90, description="Declination, degrees.")],
        catalog: Annotated[list[str] | None, Query(description="Only these catalogues (repeatable).")] = None,
    ) -> dict[str, Any]:
        """The class (SN, NT, VS, ORPHAN…), a one-line description and the ranked matches of a position,
        computed now against the installed context catalogues (``nightjar context RA DEC``)."""
        return position_report(request.app.state.settings, ra, dec, catalog)

    return api
