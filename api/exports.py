"""``/api/v1/exports``: bulk exports of a lake table as Parquet files with a manifest, made in the background.

Submit a table and one selection (a night, a HEALPix pixel ``ORDER/PIXEL``, a cone, an MJD range or SQL); follow
the export; download ``manifest.json`` and each file it lists. Exports are private to whoever submitted them
(admins see all); another user's export answers 404.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from nightjar.api.auth import SignedIn, owned
from nightjar.api.users import User
from nightjar.lake.access import LakeError
from nightjar.sql.export import MANIFEST, ExportError
from nightjar.sql.export_jobs import DONE, ExportJob, ExportManager, ExportSpec
from nightjar.sql.parse import QueryError
from nightjar.sql.watch_views import viewer_of

PARQUET = "application/vnd.apache.parquet"


class Cone(BaseModel):
    """A cone: the radius is ``radius_arcsec``, as in ``GET /api/v1/cone`` and ``in_cone()``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt radius must not be dropped silently

    ra: float = Field(ge=0, lt=360, description="Degrees.")
    dec: float = Field(ge=-90, le=90, description="Degrees.")
    radius_arcsec: float = Field(gt=0, le=36_000)


class MjdRange(BaseModel):
    """A range of midpointMjdTai (TAI) to export."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(description="MJD (TAI), inclusive.")
    end: float = Field(description="MJD (TAI), exclusive.")


class ExportRequest(BaseModel):
    """A table and exactly one selection; a field it does not know is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(min_length=1, max_length=100, description="A lake table: sources, objects, forced_sources…")
    night: int | None = Field(default=None, ge=0, le=10**6, description="One night (the lake's night number).")
    healpix: str | None = Field(default=None, max_length=40, description="ORDER/PIXEL, nested scheme (5/1234).")
    cone: Cone | None = None
    mjd: MjdRange | None = None
    sql: str | None = Field(default=None, min_length=1, max_length=20_000, description="A SELECT over the views.")


def _view(job: ExportJob, request: Request) -> dict[str, Any]:
    out = asdict(job)
    out["links"] = {"self": str(request.url_for("export", export_id=job.id))}
    if job.status == DONE:
        names = [MANIFEST, *(f["name"] for f in job.files)]
        out["links"]["files"] = {n: str(request.url_for("export_file", export_id=job.id, name=n)) for n in names}
    return out


ExportId = Annotated[str, PathParam(max_length=64)]


def router(manager: ExportManager) -> APIRouter:
    """The routes that queue exports, report on them and serve their files, each export seen only by its owner (and
    admins)."""
    api = APIRouter(prefix="/api/v1/exports", tags=["exports"])

    def own(export_id: str, user: User) -> ExportJob:
        """The caller's export; another user's is as absent as a missing one."""
        return owned(manager.get(export_id), user, f"no export {export_id}")

    @api.post("", status_code=status.HTTP_202_ACCEPTED)
    async def submit(body: ExportRequest, request: Request, user: SignedIn) -> dict[str, Any]:
        """Queue an export (signed-in users); the selection (and any SQL) is checked now."""
        spec = ExportSpec(
            table=body.table,
            night=body.night,
            healpix=body.healpix,
            cone=None if body.cone is None else (body.cone.ra, body.cone.dec, body.cone.radius_arcsec),
            mjd=None if body.mjd is None else (body.mjd.start, body.mjd.end),
            sql=body.sql,
        )
        try:
            job = await run_in_threadpool(
                manager.submit, spec, user.name, viewer_of(user.name, user.anonymous, user.is_admin)
            )
        except (ExportError, LakeError, QueryError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return _view(job, request)

    @api.get("/{export_id}", name="export")
    async def get(export_id: ExportId, request: Request, user: SignedIn) -> dict[str, Any]:
        """An export's status; when done, its rows, files (rows, bytes, SHA-256) and download links."""
        return _view(own(export_id, user), request)

    @api.get("/{export_id}/files/{name}", name="export_file", response_class=FileResponse)
    async def download(
        export_id: ExportId, name: Annotated[str, PathParam(max_length=200)], user: SignedIn
    ) -> FileResponse:
        """One file of a finished export: ``manifest.json`` or a Parquet file it lists."""
        job = own(export_id, user)
        if job.status != DONE:
            raise HTTPException(
                status_code=409, detail=f"export {export_id} is {job.status}" + (f": {job.error}" if job.error else "")
            )
        path = manager.file_path(job, name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"export {export_id} has no file {name!r}")
        media = "application/json" if name == MANIFEST else PARQUET
        return FileResponse(path, media_type=media, filename=f"nightjar-export-{export_id}-{name}")

    return api
