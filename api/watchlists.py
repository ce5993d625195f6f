"""``/api/v1/watchlists`` and ``/api/v1/watchmaps``: create, list, read, change, delete and re-match watchlists
(cones) and watchmaps (sky areas), with visibility enforced as for filters.

Anyone reads public lists; signed-in users also their own (``private`` and ``group`` lists are seen only by their
owner, and by admins). A list the caller may not see answers 404, as a missing one does. Only the owner changes,
re-matches or deletes a list (admins may delete). A new list, or one whose cones or area changed, is matched over
the lake's history by a background job: its state is ``GET .../{id}/history``.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.engine import Engine

from nightjar.api.auth import Caller, SignedIn
from nightjar.api.users import User
from nightjar.catalogs import watchmap
from nightjar.catalogs.watch_files import MAX_RADIUS_ARCSEC, WatchFileError, read_csv_text
from nightjar.pipelines.watch_history import WatchJobManager
from nightjar.sql import watch_registry
from nightjar.sql.registry import RegistryError
from nightjar.sql.watch_registry import Watchlist, Watchmap
from nightjar.storage import CatalogsHome, Home

T = TypeVar("T", Watchlist, Watchmap)

ListId = Annotated[int, PathParam(ge=1, le=2**62)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Visibility = Literal["private", "public", "group"]
MAX_CSV = 200_000_000  # characters of cones in one request (a file of ~10^7 cones goes by the command line)
MAX_MOC = 100_000_000  # bytes of base64 FITS


class WatchlistCreate(BaseModel):
    """A new watchlist: its cones in Lasair's CSV layout, default radius, sharing and description."""

    name: Name = Field(description="Unique among your watchlists.")
    cones_csv: str = Field(
        min_length=1,
        max_length=MAX_CSV,
        description="Cones in Lasair's layout: one per line, RA, Dec, ID[, radius arcsec], ',' or '|' separated, "
        "header optional, decimal degrees or sexagesimal.",
    )
    radius_arcsec: float = Field(default=2.0, gt=0, le=MAX_RADIUS_ARCSEC, description="The default cone radius.")
    visibility: Visibility = "private"
    group: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=4000)
    active: bool = True


class WatchlistUpdate(BaseModel):
    """Only the fields given change; new cones or a new radius make a new version, matched over the history."""

    name: Name | None = None
    radius_arcsec: float | None = Field(default=None, gt=0, le=MAX_RADIUS_ARCSEC)
    visibility: Visibility | None = None
    group: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    active: bool | None = None
    add_csv: str | None = Field(default=None, max_length=MAX_CSV, description="Cones to add (as cones_csv).")
    remove: list[str] = Field(default_factory=list, description="Cones to remove, by ID (name) or coneId.")
    replace_csv: str | None = Field(default=None, max_length=MAX_CSV, description="Cones replacing all.")


class Circle(BaseModel):
    """A circle on the sky: centre in degrees, radius in arcseconds."""

    ra: float = Field(ge=0, le=360)
    dec: float = Field(ge=-90, le=90)
    radius_arcsec: float = Field(gt=0, le=180 * 3600)


class Area(BaseModel):
    """Exactly one of: a MOC FITS file or HEALPix probability map (base64), a polygon, a circle."""

    moc_fits_base64: str | None = Field(default=None, max_length=MAX_MOC)
    credible: float = Field(default=0.9, gt=0, le=1, description="Credible level of a probability map.")
    polygon: list[tuple[float, float]] | None = Field(default=None, description="(ra, dec) vertices, degrees.")
    circle: Circle | None = None
    order: int = Field(default=watchmap.DEFAULT_ORDER, ge=0, le=29, description="MOC order of polygons, circles.")


class WatchmapCreate(Area):
    """A new watchmap: exactly one of a MOC FITS file or HEALPix probability map (base64), a polygon or a circle, with
    its name, sharing and description."""

    name: Name
    visibility: Visibility = "private"
    group: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=4000)
    active: bool = True


class WatchmapUpdate(Area):
    """Only the fields given change; a new area (at most one of a file, a polygon or a circle) makes a new version,
    matched over the history."""

    name: Name | None = None
    visibility: Visibility | None = None
    group: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    active: bool | None = None


def _shared(body: WatchlistCreate | WatchlistUpdate | WatchmapCreate | WatchmapUpdate) -> dict[str, Any]:
    """The registry's keyword arguments for what watchlists and watchmaps share (None: unchanged)."""
    return {"visibility": body.visibility, "group": body.group, "description": body.description, "active": body.active}


def _view(item: Watchlist | Watchmap) -> dict[str, Any]:
    out = asdict(item)
    out["id"] = str(item.id)
    out["created"], out["updated"] = item.created.isoformat(), item.updated.isoformat()
    if isinstance(item, Watchmap):
        out["area_sq_deg"] = item.area_sq_deg
    return out


def _area(body: Area) -> tuple[Any, str] | None:
    given = [x for x in (body.moc_fits_base64, body.polygon, body.circle) if x is not None]
    if len(given) > 1:
        raise watchmap.WatchmapError("give one area: moc_fits_base64, polygon or circle")
    if not given:
        return None
    if body.moc_fits_base64 is not None:
        try:
            content = base64.b64decode(body.moc_fits_base64, validate=True)
        except (binascii.Error, ValueError):
            raise watchmap.WatchmapError("moc_fits_base64 is not base64") from None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upload.fits"
            path.write_bytes(content)
            moc, kind = watchmap.from_file(path, body.credible)
        return moc, kind
    if body.polygon is not None:
        return watchmap.from_polygon(list(body.polygon), body.order), "polygon"
    assert body.circle is not None
    c = body.circle
    return watchmap.from_circle(c.ra, c.dec, c.radius_arcsec, body.order), "circle"


def seen_lists(db: Engine, lister: Callable[..., list[T]], user: User) -> list[T]:
    """What ``lister`` (``list_watchlists`` or ``list_watchmaps``) gives that ``user`` can see."""
    if user.is_admin:
        return lister(db)
    if user.anonymous:
        return [item for item in lister(db) if item.visibility == "public"]
    return lister(db, visible_to=user.name)


def visible_list(db: Engine, kind: str, list_id: int, user: User) -> Any:
    """The watchlist or watchmap (``kind``), if ``user`` may see it; a 404 otherwise, as for a missing one."""
    try:
        item = watch_registry.LIST_KINDS[kind].get(db, list_id)
    except RegistryError:
        item = None
    if item is None or not watch_registry.can_see(
        item.owner, item.visibility, None if user.anonymous else user.name, user.is_admin
    ):
        raise HTTPException(status_code=404, detail=f"no {kind} {list_id}")
    return item


def owned_list(db: Engine, kind: str, list_id: int, user: User, action: str) -> Any:
    """The watchlist or watchmap (``kind``), if ``user`` owns it: a 404 if they may not see it, else a 403."""
    item = visible_list(db, kind, list_id, user)
    if item.owner != user.name:
        raise HTTPException(status_code=403, detail=f"only its owner ({item.owner}) may {action} {kind} {list_id}")
    return item


ERRORS = (RegistryError, WatchFileError, watchmap.WatchmapError)


@contextmanager
def _bad_request() -> Iterator[None]:
    """A list's problem (a bad name, cone, area, visibility; a name taken) as a 400 with its message."""
    try:
        yield
    except ERRORS as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def _history(jobs: WatchJobManager, kind: str, item: Watchlist | Watchmap, user: User) -> dict[str, Any]:
    """Start matching the list over the lake's history (a background job): the job."""
    return asdict(jobs.submit(kind, item.id, user.name))


def _made(jobs: WatchJobManager, kind: str, user: User, make: Callable[[], T]) -> dict[str, Any]:
    """The list ``make`` creates (its problem: a 400), with the history-matching job started for it."""
    with _bad_request():
        made = make()
    out = _view(made)
    out["history"] = _history(jobs, kind, made, user)
    return out


def _changed(jobs: WatchJobManager, kind: str, user: User, change: Callable[[], tuple[T, bool]]) -> dict[str, Any]:
    """The list as ``change`` left it, with a new history-matching job if its content changed."""
    item, changed = change()
    out = _view(item)
    if changed:
        out["history"] = _history(jobs, kind, item, user)
    return out


def new_watchlist(
    db: Engine, home: CatalogsHome, jobs: WatchJobManager, user: User, body: WatchlistCreate
) -> dict[str, Any]:
    """Create ``user``'s watchlist and start matching it over the history; a 400 naming each bad line. The API
    and the portal's upload form both create watchlists through this."""

    def make() -> Watchlist:
        cones = read_csv_text(body.cones_csv, "cones_csv")
        return watch_registry.add_watchlist(
            db, home, body.name, cones, owner=user.name, radius_arcsec=body.radius_arcsec, **_shared(body)
        )

    return _made(jobs, "watchlist", user, make)


def new_watchmap(
    db: Engine, home: CatalogsHome, jobs: WatchJobManager, user: User, body: WatchmapCreate
) -> dict[str, Any]:
    """Create ``user``'s watchmap from an area (MOC or probability map, polygon, circle) and start matching it
    over the history; a 400 with the problem."""

    def make() -> Watchmap:
        area = _area(body)
        if area is None:
            raise watchmap.WatchmapError("give an area: moc_fits_base64, polygon or circle")
        return watch_registry.add_watchmap(db, home, body.name, area[0], area[1], owner=user.name, **_shared(body))

    return _made(jobs, "watchmap", user, make)


def router(db: Engine, home: CatalogsHome, jobs: WatchJobManager, lake: Home | None = None) -> APIRouter:
    """The routes of watchlists and watchmaps: create, list, read, change, delete, match over the history again, and
    follow the history job."""
    api = APIRouter(tags=["watchlists"])

    # Watchlists

    @api.post("/api/v1/watchlists", status_code=status.HTTP_201_CREATED)
    async def create_watchlist(body: WatchlistCreate, user: SignedIn) -> dict[str, Any]:
        """Create a watchlist from cones in Lasair's CSV layout; it is matched over the history in the background.
        A bad line is a 400 naming each bad line and its problem; nothing is created then."""
        return await run_in_threadpool(new_watchlist, db, home, jobs, user, body)

    _list_route(api, db, "watchlist")

    @api.get("/api/v1/watchlists/{watchlist_id}")
    async def read_watchlist(watchlist_id: ListId, user: Caller) -> dict[str, Any]:
        return _view(await run_in_threadpool(visible_list, db, "watchlist", watchlist_id, user))

    @api.get("/api/v1/watchlists/{watchlist_id}/cones")
    async def watchlist_cones(watchlist_id: ListId, user: Caller, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
        """A page of the watchlist's cones (coneId, name, ra, dec, radius; null radius: the list's default)."""
        if offset < 0 or not 0 < limit <= 100_000:
            raise HTTPException(status_code=400, detail="offset >= 0 and 0 < limit <= 100000")

        def work() -> dict[str, Any]:
            item = visible_list(db, "watchlist", watchlist_id, user)
            cones = watch_registry.read_cones(home, item)
            page = cones.slice(offset, limit).to_pylist()
            for row in page:
                row["coneId"] = str(row["coneId"])
            following = offset + limit if offset + limit < cones.num_rows else None
            return {"cones": page, "total": cones.num_rows, "next_offset": following}

        return await run_in_threadpool(work)

    @api.patch("/api/v1/watchlists/{watchlist_id}")
    async def update_watchlist(watchlist_id: ListId, body: WatchlistUpdate, user: SignedIn) -> dict[str, Any]:
        """Change your watchlist; new cones or a new radius are matched over the history again."""

        def change() -> tuple[Watchlist, bool]:
            owned_list(db, "watchlist", watchlist_id, user, "change")
            return watch_registry.edit_watchlist(
                db,
                home,
                watchlist_id,
                requester=user.name,
                name=body.name,
                radius_arcsec=body.radius_arcsec,
                add=read_csv_text(body.add_csv, "add_csv") if body.add_csv else None,
                remove=body.remove,
                replace=read_csv_text(body.replace_csv, "replace_csv") if body.replace_csv else None,
                **_shared(body),
            )

        with _bad_request():
            return await run_in_threadpool(_changed, jobs, "watchlist", user, change)

    # Watchmaps

    @api.post("/api/v1/watchmaps", status_code=status.HTTP_201_CREATED)
    async def create_watchmap(body: WatchmapCreate, user: SignedIn) -> dict[str, Any]:
        """Create a watchmap from a MOC FITS file or probability map (base64), a polygon or a circle; it is
        matched over the history in the background."""
        return await run_in_threadpool(new_watchmap, db, home, jobs, user, body)

    _list_route(api, db, "watchmap")

    @api.get("/api/v1/watchmaps/{watchmap_id}")
    async def read_watchmap(watchmap_id: ListId, user: Caller) -> dict[str, Any]:
        return _view(await run_in_threadpool(visible_list, db, "watchmap", watchmap_id, user))

    @api.patch("/api/v1/watchmaps/{watchmap_id}")
    async def update_watchmap(watchmap_id: ListId, body: WatchmapUpdate, user: SignedIn) -> dict[str, Any]:
        def change() -> tuple[Watchmap, bool]:
            owned_list(db, "watchmap", watchmap_id, user, "change")
            area = _area(body)
            moc, kind = area if area else (None, None)
            return watch_registry.edit_watchmap(
                db, home, watchmap_id, requester=user.name, name=body.name, moc=moc, kind=kind, **_shared(body)
            )

        with _bad_request():
            return await run_in_threadpool(_changed, jobs, "watchmap", user, change)

    # Both

    for kind in watch_registry.LIST_KINDS:
        _shared_routes(api, kind, db, home, jobs, lake)
    return api


def _list_route(api: APIRouter, db: Engine, kind: str) -> None:
    plural, lister = f"{kind}s", watch_registry.LIST_KINDS[kind].listed

    async def listed(user: Caller) -> list[dict[str, Any]]:
        return [_view(item) for item in await run_in_threadpool(seen_lists, db, lister, user)]

    api.add_api_route(
        f"/api/v1/{plural}",
        listed,
        methods=["GET"],
        name=f"list_{plural}",
        description=f"The {plural} the caller can see: their own and the public ones (anonymous callers: public only).",
    )


def _shared_routes(
    api: APIRouter, kind: str, db: Engine, home: CatalogsHome, jobs: WatchJobManager, lake: Home | None = None
) -> None:
    plural, deleter = f"{kind}s", watch_registry.LIST_KINDS[kind].delete

    async def delete(list_id: ListId, user: SignedIn) -> dict[str, Any]:
        """Delete a list and its hits (its owner or an admin); its id is never reused."""

        def work() -> dict[str, Any]:
            item = visible_list(db, kind, list_id, user)
            if item.owner != user.name and not user.is_admin:
                raise HTTPException(
                    status_code=403, detail=f"only its owner ({item.owner}) may delete {kind} {list_id}"
                )
            return _view(deleter(db, home, list_id, requester=item.owner, lake=lake))

        return await run_in_threadpool(work)

    async def rerun(list_id: ListId, user: SignedIn) -> dict[str, Any]:
        """Match the list over the lake's history again (a background job: follow it at .../history)."""

        def work() -> dict[str, Any]:
            return _history(jobs, kind, owned_list(db, kind, list_id, user, "re-match"), user)

        return await run_in_threadpool(work)

    async def follow(list_id: ListId, user: Caller) -> dict[str, Any]:
        """The newest history-matching job of the list: status, progress (percent), alerts matched, hits."""

        def work() -> dict[str, Any]:
            item = visible_list(db, kind, list_id, user)
            job = jobs.get(item.history_job) if item.history_job else None
            if job is None:
                raise HTTPException(status_code=404, detail=f"{kind} {list_id} has no history job")
            return asdict(job)

        return await run_in_threadpool(work)

    api.add_api_route(f"/api/v1/{plural}/{{list_id}}", delete, methods=["DELETE"], name=f"delete_{kind}")
    api.add_api_route(
        f"/api/v1/{plural}/{{list_id}}/rerun",
        rerun,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        name=f"rerun_{kind}",
    )
    api.add_api_route(f"/api/v1/{plural}/{{list_id}}/history", follow, methods=["GET"], name=f"history_{kind}")
