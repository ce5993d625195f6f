"""``/api/v1/jobs``: long queries in the background; submit, follow, fetch the result as Parquet, cancel."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from nightjar.api.auth import SignedIn, owned
from nightjar.api.users import User
from nightjar.sql.jobs import DONE, Job, JobManager
from nightjar.sql.parse import QueryError
from nightjar.sql.watch_views import viewer_of

PARQUET = "application/vnd.apache.parquet"


class JobRequest(BaseModel):
    """A query to run in the background over the whole lake, or the lake as of a version or time."""

    sql: str = Field(min_length=1, description="One SELECT over the views; runs with the job limits.")
    as_of: str | int | None = Field(default=None, description="A lake version or a UTC time.")


def _view(job: Job, request: Request) -> dict[str, Any]:
    out = asdict(job)
    out["links"] = {"self": str(request.url_for("job", job_id=job.id))}
    if job.status == DONE:
        out["links"]["result"] = str(request.url_for("job_result", job_id=job.id))
    return out


def router(manager: JobManager) -> APIRouter:
    """The routes that queue query jobs, report on them, serve their Parquet results and cancel them, each job seen only
    by its owner (and admins)."""
    api = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

    def own(job_id: str, user: User) -> Job:
        """The caller's job; another user's job is as absent as a missing one."""
        return owned(manager.get(job_id), user, f"no job {job_id}")

    @api.post("", status_code=status.HTTP_202_ACCEPTED)
    async def submit(body: JobRequest, request: Request, user: SignedIn) -> dict[str, Any]:
        """Queue a query (signed-in users); its SQL is checked now."""
        as_of = None if body.as_of is None else str(body.as_of)
        try:
            viewer = viewer_of(user.name, user.anonymous, user.is_admin)
            job = await run_in_threadpool(manager.submit, body.sql, as_of, user.name, viewer)
        except (QueryError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return _view(job, request)

    @api.get("/{job_id}", name="job")
    async def get(job_id: str, request: Request, user: SignedIn) -> dict[str, Any]:
        """A job's status, progress (percent) and rows so far."""
        return _view(own(job_id, user), request)

    @api.get("/{job_id}/result", name="job_result", response_class=FileResponse)
    async def result(job_id: str, user: SignedIn) -> FileResponse:
        """The result of a finished job, as Parquet."""
        job = own(job_id, user)
        if job.status != DONE:
            raise HTTPException(
                status_code=409, detail=f"job {job_id} is {job.status}" + (f": {job.error}" if job.error else "")
            )
        return FileResponse(manager.result_path(job_id), media_type=PARQUET, filename=f"nightjar-{job_id}.parquet")

    @api.delete("/{job_id}")
    async def cancel(job_id: str, request: Request, user: SignedIn) -> dict[str, Any]:
        own(job_id, user)
        job = manager.cancel(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return _view(job, request)

    return api
