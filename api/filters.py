"""``/api/v1/filters``: create, list, read, change, delete and copy filters, with visibility enforced.

Anyone reads public filters; signed-in users also their own (``private`` and ``group`` filters are seen only by
their owner, since users have no groups yet; admins see every filter). A filter the caller may not see answers
404, as a missing one does, so private filters do not leak their existence. Only the owner changes a filter
(new SQL or mode make a new version); the owner or an admin deletes it; anyone signed in copies a filter they
can see that is public, or their own. E-mail addresses and webhook URLs are shown to the owner only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.engine import Engine

from nightjar.api.auth import Caller, SignedIn
from nightjar.api.users import User
from nightjar.sql import registry
from nightjar.sql.filter_check import empty_view_warnings
from nightjar.sql.parse import QueryError
from nightjar.sql.registry import Filter, RegistryError
from nightjar.storage import Home

MAX_SQL = 20_000
FilterId = Annotated[int, PathParam(ge=1, le=2**62, description="The filter's id (its topic is nightjar.filter.<id>).")]
# No control characters: names end up in Kafka headers and e-mail subjects.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Address = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00-\x20\x7f]+$")]
Visibility = Literal["private", "public", "group"]
Mode = Literal["all", "new"]
Format = Literal["json", "avro"]


class FilterCreate(BaseModel):
    """A new streaming filter: its SQL, who may see it, what it delivers and where."""

    name: Name = Field(description="Unique among your filters.")
    sql: str = Field(min_length=1, max_length=MAX_SQL, description="One SELECT over the views; checked now.")
    visibility: Visibility = "private"
    group: str | None = Field(default=None, max_length=200)
    mode: Mode = Field(default="all", description="all: every matching alert; new: an object's first match only.")
    format: Format = Field(default="json", description="Kafka messages as JSON or Confluent-framed Avro.")
    kafka: bool = Field(default=True, description="Publish matches to the topic nightjar.filter.<id>.")
    emails: list[Address] = Field(default_factory=list, max_length=20)
    webhooks: list[Address] = Field(default_factory=list, max_length=20)


class FilterUpdate(BaseModel):
    """Only the fields given change; new SQL or a new mode make a new version."""

    name: Name | None = None
    sql: str | None = Field(default=None, min_length=1, max_length=MAX_SQL)
    active: bool | None = None
    visibility: Visibility | None = None
    group: str | None = Field(default=None, max_length=200)
    mode: Mode | None = None
    format: Format | None = None
    kafka: bool | None = None
    emails: list[Address] | None = Field(default=None, max_length=20)
    webhooks: list[Address] | None = Field(default=None, max_length=20)


class FilterCopy(BaseModel):
    """The name of a copy of a filter."""

    name: Name | None = Field(default=None, description="Default: '<name> (copy)'.")


class Outputs(BaseModel):
    """Where a filter's matches go."""

    topic: str | None = Field(description="The Kafka topic of the matches (null when Kafka is off).")
    emails: list[str] | None = Field(description="Shown to the owner only (null to others).")
    webhooks: list[str] | None = Field(description="Shown to the owner only (null to others).")


class Health(BaseModel):
    """Whether a filter runs, and its recent failures."""

    active: bool
    failures: int = Field(description="Failing batches in a row; the filter stops after too many.")
    last_error: str | None


class VersionView(BaseModel):
    """One version of a filter: its name, SQL and mode, and when it was made."""

    version: int
    name: str
    sql: str
    mode: str
    created: str


class FilterView(BaseModel):
    """A filter as the API shows it; its e-mail and webhook addresses only to its owner."""

    id: str
    name: str
    owner: str
    sql: str
    version: int
    visibility: str
    group: str | None
    mode: str
    format: str
    copied_from: str | None
    outputs: Outputs
    health: Health
    versions: list[VersionView] | None = Field(default=None, description="The version history (single reads).")
    warnings: list[str] = Field(
        default_factory=list,
        description="What may surprise the filter's author, e.g. it reads a view that holds no rows yet "
        "(watchlist_hits, area_hits). The filter is valid and saved all the same.",
    )


def can_see(flt: Filter, user: User) -> bool:
    """Whether ``user`` may see the filter: public, their own, or any to an admin."""
    return flt.visibility == "public" or user.is_admin or (not user.anonymous and flt.owner == user.name)


def view(flt: Filter, user: User, history: list[registry.Version] | None = None) -> FilterView:
    """The API's view of a filter for ``user``, with its version history when ``history`` is given."""
    mine = not user.anonymous and flt.owner == user.name
    return FilterView(
        id=str(flt.id),
        name=flt.name,
        owner=flt.owner,
        sql=flt.sql,
        version=flt.version,
        visibility=flt.visibility,
        group=flt.group,
        mode=flt.mode,
        format=flt.format,
        copied_from=None if flt.copied_from is None else str(flt.copied_from),
        outputs=Outputs(
            topic=flt.topic if flt.kafka else None,
            emails=list(flt.emails) if mine else None,
            webhooks=list(flt.webhooks) if mine else None,
        ),
        health=Health(active=flt.active, failures=flt.failures, last_error=flt.last_error),
        warnings=empty_view_warnings(flt.sql),
        versions=None
        if history is None
        else [
            VersionView(version=v.version, name=v.name, sql=v.sql, mode=v.mode, created=v.created.isoformat())
            for v in history
        ],
    )


def _free_name(db: Engine, owner: str, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``, ``(3)``… when the owner already has a filter of that name."""
    taken = {f.name for f in registry.list_filters(db, owner=owner)}
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted} ({n})"
    return name


def visible_filter(db: Engine, filter_id: int, user: User) -> Filter:
    """The filter, if ``user`` may see it; a 404 otherwise (the same answer as for a missing one)."""
    try:
        flt = registry.get_filter(db, filter_id)
    except RegistryError:
        flt = None
    if flt is None or not can_see(flt, user):
        raise HTTPException(status_code=404, detail=f"no filter {filter_id}")
    return flt


def owned_filter(db: Engine, filter_id: int, user: User, action: str) -> Filter:
    """The filter, if ``user`` owns it; 404 when they may not see it, 403 when it is not theirs."""
    flt = visible_filter(db, filter_id, user)
    if flt.owner != user.name:
        raise HTTPException(status_code=403, detail=f"only its owner ({flt.owner}) may {action} filter {filter_id}")
    return flt


def visible_filters(db: Engine, user: User) -> list[Filter]:
    """The filters ``user`` can see: their own and the public ones (admins: all; anonymous: public only)."""
    if user.is_admin:
        return registry.list_filters(db)
    return [f for f in registry.list_filters(db, visible_to=user.name) if can_see(f, user)]


def _checked(work: Callable[[], Filter]) -> Filter:
    try:
        return work()
    except (QueryError, RegistryError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def create_filter(db: Engine, home: Home | None, user: User, body: FilterCreate) -> Filter:
    """Register a filter owned by ``user``; its SQL is checked now (a 400 naming the problem, 409 on a name
    clash). The API and the portal's filter form both create filters through this."""
    clash = [f for f in registry.list_filters(db, owner=user.name) if f.name == body.name]
    if clash:
        raise HTTPException(
            status_code=409,
            detail=f"you already have a filter named {body.name!r} (id {clash[0].id}): "
            f"change it with PATCH /api/v1/filters/{clash[0].id}",
        )
    return _checked(
        lambda: registry.add_filter(
            db,
            body.name,
            body.sql,
            owner=user.name,
            visibility=body.visibility,
            group=body.group,
            mode=body.mode,
            emails=body.emails,
            webhooks=body.webhooks,
            kafka=body.kafka,
            format=body.format,
            home=home,
        )
    )


def update_filter(db: Engine, home: Home | None, user: User, filter_id: int, body: FilterUpdate) -> Filter:
    """Change ``user``'s filter (only the fields given); new SQL is checked (400) and makes a new version."""
    owned_filter(db, filter_id, user, "change")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return _checked(lambda: registry.edit_filter(db, filter_id, requester=user.name, home=home, **changes))


def copy_filter(db: Engine, home: Home | None, user: User, filter_id: int, name: str | None = None) -> Filter:
    """Copy a public filter (or ``user``'s own) as a new private filter of theirs, with its own topic."""
    source = visible_filter(db, filter_id, user)
    if source.visibility != "public" and source.owner != user.name:
        raise HTTPException(status_code=403, detail=f"filter {filter_id} is not public: only its owner may copy it")
    wanted = name or f"{source.name} (copy)"
    return _checked(
        lambda: registry.copy_filter(db, filter_id, owner=user.name, name=_free_name(db, user.name, wanted), home=home)
    )


def router(db: Engine, home: Home | None = None) -> APIRouter:
    """The filter routes; new SQL is checked against the columns of the lake in ``home``."""
    api = APIRouter(prefix="/api/v1/filters", tags=["filters"])

    @api.post("", status_code=status.HTTP_201_CREATED, response_model=FilterView)
    async def create(body: FilterCreate, user: SignedIn) -> FilterView:
        """Register a filter owned by the caller; its SQL is checked now (400 with the problem otherwise)."""
        flt = await run_in_threadpool(create_filter, db, home, user, body)
        return view(flt, user, registry.versions(db, flt.id))

    @api.get("", response_model=list[FilterView])
    async def list_all(user: Caller) -> list[FilterView]:
        """The filters the caller can see: their own and the public ones (anonymous callers: public only)."""
        return [view(f, user) for f in await run_in_threadpool(visible_filters, db, user)]

    @api.get("/{filter_id}", response_model=FilterView)
    async def read(filter_id: FilterId, user: Caller) -> FilterView:
        """One filter with its outputs, health and version history."""
        flt = await run_in_threadpool(visible_filter, db, filter_id, user)
        return view(flt, user, await run_in_threadpool(registry.versions, db, filter_id))

    @api.patch("/{filter_id}", response_model=FilterView)
    async def update(filter_id: FilterId, body: FilterUpdate, user: SignedIn) -> FilterView:
        """Change your filter; new SQL or a new mode make a new version (the topic stays)."""
        flt = await run_in_threadpool(update_filter, db, home, user, filter_id, body)
        return view(flt, user, registry.versions(db, filter_id))

    @api.delete("/{filter_id}", response_model=FilterView)
    async def delete(filter_id: FilterId, user: SignedIn) -> FilterView:
        """Delete a filter (its owner or an admin); its id and topic are never reused."""

        def work() -> Filter:
            flt = visible_filter(db, filter_id, user)
            if flt.owner != user.name and not user.is_admin:
                raise HTTPException(
                    status_code=403, detail=f"only its owner ({flt.owner}) may delete filter {filter_id}"
                )
            return registry.delete_filter(db, filter_id, requester=flt.owner)

        return view(await run_in_threadpool(work), user)

    @api.post("/{filter_id}/copy", status_code=status.HTTP_201_CREATED, response_model=FilterView)
    async def copy(filter_id: FilterId, user: SignedIn, body: FilterCopy | None = None) -> FilterView:
        """Copy a public filter (or your own) as a new private filter of yours, with its own topic."""
        name = body.name if body and body.name else None
        flt = await run_in_threadpool(copy_filter, db, home, user, filter_id, name)
        return view(flt, user, registry.versions(db, flt.id))

    return api
