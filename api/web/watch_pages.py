"""Watchlist and watchmap pages: the lists a visitor can see, an upload form for each, and a page per list with
its cones or area, its hits and a Mollweide sky map.

Creation and visibility go through the watchlist API's own functions (``new_watchlist``, ``new_watchmap``,
``seen_lists``, ``visible_list``): a private list is a 404 to anyone but its owner (and admins).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from starlette.datastructures import UploadFile

from nightjar import paths
from nightjar.api.lake_state import Lake
from nightjar.api.users import User
from nightjar.api.watchlists import (
    WatchlistCreate,
    WatchmapCreate,
    new_watchlist,
    new_watchmap,
    seen_lists,
    visible_list,
)
from nightjar.api.web.filter_pages import _invalid
from nightjar.api.web.session import PageUser, SignedInPage, checked_form
from nightjar.api.web.skymap import sky_traces
from nightjar.api.web.templating import render
from nightjar.lake import objects
from nightjar.lake.serving import Snapshot
from nightjar.lake.watch_hits import hits_of_list
from nightjar.pipelines.watch_history import WatchJobManager
from nightjar.sql import watch_registry
from nightjar.storage import CatalogsHome

ListId = Annotated[int, PathParam(ge=1, le=2**62)]
SHOWN_CONES = 200
SHOWN_HITS = 500
MAX_UPLOAD = 50_000_000


async def _upload(request: Request, field: str) -> bytes | None:
    """The bytes of an uploaded file (None when none was chosen); the form's files are closed after."""
    form = await request.form()
    try:
        value = form.get(field)
        if not isinstance(value, UploadFile) or not value.filename:
            return None
        data = await value.read(MAX_UPLOAD + 1)
    finally:
        await form.close()  # every file input posts a spooled file, chosen or not; the text fields stay readable
    if len(data) > MAX_UPLOAD:
        raise HTTPException(status_code=413, detail=f"files up to {MAX_UPLOAD // 1_000_000} MB here; larger by the CLI")
    return data


def _hit_positions(snap: Snapshot, hits: list[dict[str, Any]]) -> tuple[list[float], list[float], list[str]]:
    """Positions of the hit objects (their ``objects`` rows, by the indexed look-up)."""
    ids = sorted({int(h["diaObjectId"]) for h in hits})
    if not ids:
        return [], [], []
    rows = objects.objects_rows(snap.tables, ids, ["ra", "dec"], snap.object_index())
    return rows["ra"].to_pylist(), rows["dec"].to_pylist(), [str(i) for i in rows["diaObjectId"].to_pylist()]


def router(db: Engine, home: CatalogsHome, jobs: WatchJobManager) -> APIRouter:
    """The portal's watchlist and watchmap pages: lists, forms to create them, and each list's page."""
    pages = APIRouter(include_in_schema=False)

    def form_page(request: Request, user: User, kind: str, values: dict[str, Any], error: str | None) -> Response:
        title = "New watchlist" if kind == "watchlist" else "New watchmap"
        context = {"user": user, "title": title, "kind": kind, "values": values, "error": error}
        return render(request, "watch_form.html", context)

    async def created(
        request: Request, user: User, kind: str, shown: dict[str, Any], make: Callable[[], dict[str, Any]]
    ) -> Response:
        """The page of the list ``make`` creates, or its form again with the problem (a field's or the list's)."""
        try:
            made = await run_in_threadpool(make)
        except ValidationError as exc:
            return form_page(request, user, kind, shown, _invalid(exc))
        except HTTPException as exc:
            return form_page(request, user, kind, shown, str(exc.detail))
        return RedirectResponse(f"/{kind}s/{made['id']}", status_code=303)

    @pages.get("/watchlists")
    async def lists(request: Request, user: PageUser) -> Response:
        found_lists = await run_in_threadpool(seen_lists, db, watch_registry.list_watchlists, user)
        found_maps = await run_in_threadpool(seen_lists, db, watch_registry.list_watchmaps, user)
        context = {"user": user, "title": "Watchlists and watchmaps", "lists": found_lists, "maps": found_maps}
        return render(request, "watchlists.html", context)

    @pages.get("/watchlists/new")
    async def new_list_form(request: Request, user: SignedInPage) -> Response:
        return form_page(request, user, "watchlist", {"radius_arcsec": 2.0, "visibility": "private"}, None)

    @pages.post("/watchlists/new")
    async def create_list(request: Request, user: SignedInPage) -> Response:
        form = await checked_form(request)
        values: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "radius_arcsec": form.get("radius_arcsec") or 2.0,
            "visibility": form.get("visibility", "private"),
            "description": form.get("description", ""),
            "cones_csv": form.get("cones_csv", ""),
        }
        uploaded = await _upload(request, "cones_file")
        if uploaded is not None:
            values["cones_csv"] = uploaded.decode("utf-8", errors="replace")
        return await created(
            request, user, "watchlist", values, lambda: new_watchlist(db, home, jobs, user, WatchlistCreate(**values))
        )

    @pages.get("/watchmaps/new")
    async def new_map_form(request: Request, user: SignedInPage) -> Response:
        return form_page(request, user, "watchmap", {"visibility": "private", "credible": 0.9}, None)

    @pages.post("/watchmaps/new")
    async def create_map(request: Request, user: SignedInPage) -> Response:
        form = await checked_form(request)
        values: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "visibility": form.get("visibility", "private"),
            "description": form.get("description", ""),
            "credible": form.get("credible") or 0.9,
        }
        uploaded = await _upload(request, "moc_file")
        if uploaded is not None:
            values["moc_fits_base64"] = base64.b64encode(uploaded).decode()
        elif form.get("ra") and form.get("dec") and form.get("radius_arcsec"):
            values["circle"] = {"ra": form["ra"], "dec": form["dec"], "radius_arcsec": form["radius_arcsec"]}
        shown = {k: v for k, v in values.items() if k != "moc_fits_base64"}
        return await created(
            request, user, "watchmap", shown, lambda: new_watchmap(db, home, jobs, user, WatchmapCreate(**values))
        )

    def show(request: Request, user: User, snap: Snapshot, kind: str, list_id: int) -> Response:
        item = visible_list(db, kind, list_id, user)
        table = paths.LIST_HITS[kind]
        hits = hits_of_list(snap.tables, table, list_id, SHOWN_HITS).to_pylist()
        for hit in hits:
            for key in ("diaObjectId", "diaSourceId", "coneId"):
                if hit.get(key) is not None:
                    hit[key] = str(hit[key])
        cones: list[dict[str, Any]] = []
        if kind == "watchlist":
            cones = watch_registry.read_cones(home, item).slice(0, SHOWN_CONES).to_pylist()
        ra, dec, labels = _hit_positions(snap, hits)
        traces = sky_traces(ra, dec, labels, "hit objects")
        if cones:
            cone_traces = sky_traces(
                [c["ra"] for c in cones], [c["dec"] for c in cones], [c["name"] for c in cones], ""
            )
            cone_traces[-1].update(name="cones", marker={"size": 5, "color": "#2c7fb8", "symbol": "circle-open"})
            traces.append(cone_traces[-1])
        context = {
            "user": user,
            "title": f"{kind.capitalize()} {item.name}",
            "kind": kind,
            "item": item,
            "hits": hits,
            "cones": cones,
            "sky": traces,
            "api_url": f"/api/v1/{kind}s/{list_id}",
        }
        return render(request, "watch.html", context)

    @pages.get("/watchlists/{list_id}")
    async def show_list(request: Request, user: PageUser, snap: Lake, list_id: ListId) -> Response:
        return await run_in_threadpool(show, request, user, snap, "watchlist", list_id)

    @pages.get("/watchmaps/{list_id}")
    async def show_map(request: Request, user: PageUser, snap: Lake, list_id: ListId) -> Response:
        return await run_in_threadpool(show, request, user, snap, "watchmap", list_id)

    return pages
