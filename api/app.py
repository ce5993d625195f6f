"""The FastAPI application: ``create_app(settings)`` builds it; ``nightjar serve`` runs it with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path

from nightjar import __version__
from nightjar.api import annotations as annotation_api
from nightjar.api import (
    api_docs,
    cone,
    context,
    cutouts,
    exports,
    filter_messages,
    filters,
    jobs,
    lasair,
    lasair_annotate,
    objects,
    query,
    skymaps,
    sso,
    users,
    watchlists,
)
from nightjar.api.auth import Auth, Caller
from nightjar.api.params import known_query_parameters
from nightjar.api.web import pages
from nightjar.catalogs.watch_migrate import watch_root
from nightjar.lake.serving import LakeReader
from nightjar.pipelines.watch_history import WatchJobManager
from nightjar.settings import Settings
from nightjar.sql import functions, registry
from nightjar.sql.export_jobs import ExportManager
from nightjar.sql.jobs import JobManager


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application over ``settings``: the API's routers, the query, export and watch job managers,
    authentication, the Lasair-compatible endpoints, the web portal and the local API docs. Its lifespan closes the
    managers and database engines."""
    manager = JobManager(settings)
    export_manager = ExportManager(settings)
    auth = Auth(settings, users.engine(settings.metadata_url))
    filters_db = registry.engine(settings.metadata_url)
    watch_jobs = WatchJobManager(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            manager.close()
            export_manager.close()
            watch_jobs.close()
            auth.engine.dispose()
            filters_db.dispose()

    app = FastAPI(
        title="Nightjar",
        version=__version__,
        description="An alert broker for Rubin/LSST and ZTF.",
        lifespan=lifespan,
        dependencies=[Depends(known_query_parameters)],
        docs_url=None,  # api_docs serves /docs from local files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.jobs = manager
    app.state.auth = auth
    app.state.lake = LakeReader(settings.lake)
    app.include_router(query.router(settings))
    app.include_router(jobs.router(manager))
    app.include_router(cone.router())
    app.include_router(objects.router())
    app.include_router(sso.router())
    app.include_router(cutouts.router())
    app.include_router(context.router())
    app.include_router(lasair.router(settings))
    app.state.exports = export_manager
    app.include_router(exports.router(export_manager))
    app.include_router(filters.router(filters_db, settings.lake))
    app.state.watch_jobs = watch_jobs
    watch_files = watch_root(settings)  # an older home's watch files are moved under the catalogues' root first
    app.include_router(watchlists.router(filters_db, watch_files, watch_jobs, settings.lake))
    app.include_router(filter_messages.router(settings, filters_db))
    app.include_router(annotation_api.router(settings))
    app.include_router(lasair_annotate.router(settings))
    app.include_router(skymaps.router(watch_files, settings.lake))
    pages.install(app, settings, filters_db, watch_jobs, watch_files)
    api_docs.install(app)

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/me", tags=["users"])
    async def me(user: Caller) -> dict[str, Any]:
        """The calling user: name, role, annotation topics and limits."""
        return {
            "name": user.name,
            "role": user.role,
            "topics": list(user.topics),
            "max_rows": auth.max_rows(user),
            "requests_per_minute": auth.limit_for(user.role),
        }

    @app.get("/api/v1/functions", tags=["query"])
    async def helper_functions() -> list[dict[str, str]]:
        """The helper functions user SQL can call (magnitudes, MJD, separations, cones, HEALPix)."""
        return [{"name": f.name, "signature": f.signature, "description": f.description} for f in functions.FUNCTIONS]

    @app.get("/api/v1/schemas/ids/{schema_id}", tags=["filters"])
    async def avro_schema(schema_id: Annotated[int, Path(ge=0, le=2**63 - 1)]) -> dict[str, Any]:
        """A published Avro schema of a filter topic (the id is in each Avro message), registry-style."""
        db = registry.engine(settings.metadata_url)
        try:
            return {"schema": registry.avro_schema(db, schema_id)}
        except registry.RegistryError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        finally:
            db.dispose()

    return app


def server_config(settings: Settings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """How ``nightjar serve`` runs the app. Proxy headers are believed only from ``api_trusted_proxies``
    (uvicorn's own default trusts them from 127.0.0.1, so any local client could pick its address)."""
    proxies = settings.api_trusted_proxies
    return uvicorn.Config(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=",".join(proxies) if proxies else "",
        server_header=False,
    )
