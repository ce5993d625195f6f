"""Watchlists and watchmaps in the metadata database: add, edit, delete, list; their files under the catalogues'
root (``Settings.catalogs``, ``catalogs.watch_store``; a home folder passed as ``home`` means its ``catalogs/``).

A watchlist (named cones) or watchmap (a named sky area) belongs to an owner and has a visibility (``private``,
``public`` or ``group``, as filters; ``group`` lists are their owner's until users have groups), an active flag
and a description. Its content is a file per version (cones: Parquet sorted by HEALPix; areas: a MOC in FITS),
written (whole, from bytes in memory) inside the database transaction that records it and removed if that
transaction fails: a list is created whole or not at all. Each change of
the content (cones added, removed or replaced, a new default radius, a new area) makes a new version; the
pipeline's workers key their cached indexes by it. What watchlists and watchmaps do alike (a row and its file in
one transaction, the shared columns, ownership, listing, deletion) is written once, in ``sql.watch_rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from mocpy import MOC
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.catalogs.watch_files import CONES_SCHEMA, WatchFileError, check_radius
from nightjar.catalogs.watch_index import HPX, WatchlistSpec, sorted_cones
from nightjar.catalogs.watch_store import root_of
from nightjar.catalogs.watchmap import KINDS, WatchmapSpec
from nightjar.sql import watch_rows
from nightjar.sql.registry import LOCAL_OWNER, RegistryError
from nightjar.sql.registry_models import WatchlistRow, WatchmapRow
from nightjar.sql.watch_rows import Shared
from nightjar.storage import CatalogsHome, CatalogsRoot, Home

MAX_CONES = 10_000_000
DEFAULT_RADIUS_ARCSEC = 2.0


@dataclass(frozen=True)
class _Common:
    """The first fields of a watchlist and a watchmap, the columns they share."""

    id: int
    name: str
    owner: str
    description: str
    visibility: str
    group: str | None
    active: bool


@dataclass(frozen=True)
class Watchlist(_Common):
    """A watchlist as registered: its default radius, current version, cone count, history job and times."""

    radius_arcsec: float
    version: int
    cones: int
    history_job: str | None
    created: datetime
    updated: datetime

    @property
    def key(self) -> str:
        """Its current cones within the catalogues' root (``paths.watchlist_key``)."""
        return paths.watchlist_key(self.id, self.version)

    def spec(self, home: CatalogsHome) -> WatchlistSpec:
        """What a worker needs to match the current version of the watchlist."""
        public = self.visibility == "public"
        root = root_of(home)
        return WatchlistSpec(self.id, self.version, self.key, self.radius_arcsec, self.owner, public, root)


@dataclass(frozen=True)
class Watchmap(_Common):
    """A watchmap as registered: its kind of area, MOC order, sky fraction, current version, history job and times."""

    kind: str
    max_order: int
    sky_fraction: float
    version: int
    history_job: str | None
    created: datetime
    updated: datetime

    @property
    def key(self) -> str:
        """Its current area within the catalogues' root (``paths.watchmap_key``)."""
        return paths.watchmap_key(self.id, self.version)

    def spec(self, home: CatalogsHome) -> WatchmapSpec:
        """What a worker needs to match the current version of the watchmap."""
        public = self.visibility == "public"
        return WatchmapSpec(self.id, self.version, self.key, self.owner, public, root_of(home))

    @property
    def area_sq_deg(self) -> float:
        """The watchmap's area in square degrees."""
        return self.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2


def _fields(cls: type[Watchlist] | type[Watchmap], row: WatchlistRow | WatchmapRow) -> dict[str, Any]:
    """The values of a row by the fields of its dataclass (``group`` is the column ``group_name``)."""
    return {f.name: getattr(row, "group_name" if f.name == "group" else f.name) for f in fields(cls)}


def _watchlist(row: WatchlistRow) -> Watchlist:
    return Watchlist(**_fields(Watchlist, row))


def _watchmap(row: WatchmapRow) -> Watchmap:
    return Watchmap(**_fields(Watchmap, row))


def can_see(owner: str, visibility: str, requester: str | None, admin: bool = False) -> bool:
    """Whether ``requester`` (None: anonymous) may see a list: public, their own, or any to an admin."""
    return visibility == "public" or admin or (requester is not None and owner == requester)


def _cones_bytes(cones: pa.Table) -> bytes:
    table = cones if HPX in cones.column_names else sorted_cones(cones)
    return watch_store.parquet_bytes(table, row_group_size=1 << 20)


def _check_cones(cones: pa.Table) -> None:
    if cones.num_rows == 0:
        raise WatchFileError("a watchlist needs at least one cone")
    if cones.num_rows > MAX_CONES:
        raise WatchFileError(f"a watchlist has at most {MAX_CONES:,} cones, not {cones.num_rows:,}")


def add_watchlist(
    eng: Engine,
    home: CatalogsHome,
    name: str,
    cones: pa.Table,
    *,
    owner: str = LOCAL_OWNER,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
    visibility: str = "private",
    group: str | None = None,
    description: str = "",
    active: bool = True,
) -> Watchlist:
    """Create a watchlist of ``cones`` (``catalogs.watch_files.read_cones``); nothing is left behind on error."""
    shared = Shared(name, description, visibility, group, active)
    shared.check()
    check_radius(radius_arcsec)
    _check_cones(cones)
    row = WatchlistRow(owner=owner, radius_arcsec=float(radius_arcsec), cones=cones.num_rows)
    return watch_rows.add(eng, home, row, shared, lambda: _cones_bytes(cones), _watchlist)


def read_cones(home: CatalogsHome, watchlist: Watchlist) -> pa.Table:
    """The cones of a watchlist's current version (``CONES_SCHEMA``, by coneId)."""
    table = watch_store.read_parquet(root_of(home), watchlist.key).select(CONES_SCHEMA.names)
    return table.sort_by("coneId")


def edit_watchlist(
    eng: Engine,
    home: CatalogsHome,
    watchlist_id: int,
    *,
    requester: str = LOCAL_OWNER,
    name: str | None = None,
    description: str | None = None,
    radius_arcsec: float | None = None,
    visibility: str | None = None,
    group: str | None = None,
    active: bool | None = None,
    add: pa.Table | None = None,
    remove: Sequence[str] = (),
    replace: pa.Table | None = None,
) -> tuple[Watchlist, bool]:
    """Change a watchlist; (the watchlist, whether its cones or radius changed: a new version, to match over the
    history again). ``add``: new cones (given new ids); ``remove``: cones by name or id; ``replace``: all cones."""
    shared = Shared(name, description, visibility, group, active)
    shared.check()
    if radius_arcsec is not None:
        check_radius(radius_arcsec)

    def content(row: WatchlistRow, root: CatalogsRoot) -> bytes | None:
        """The cones of the new version, if the cones or the radius change."""
        changed = radius_arcsec is not None and float(radius_arcsec) != row.radius_arcsec
        if radius_arcsec is not None:
            row.radius_arcsec = float(radius_arcsec)
        if replace is None and add is None and not remove:
            if not changed:
                return None
            cones = watch_store.read_parquet(root, paths.watchlist_key(row.id, row.version))  # a new radius alone
        else:
            cones = replace if replace is not None else read_cones(root, _watchlist(row))
            if remove:
                cones = _without(cones, remove)
            if add is not None and add.num_rows:
                start = int(pc.max(cones["coneId"]).as_py() or 0) if cones.num_rows else 0
                ids = pa.array(np.arange(start + 1, start + 1 + add.num_rows, dtype=np.int64))
                fresh = add.select(CONES_SCHEMA.names).set_column(0, "coneId", ids)
                cones = pa.concat_tables([cones.select(CONES_SCHEMA.names).cast(CONES_SCHEMA), fresh])
            _check_cones(cones)
        row.cones = cones.num_rows
        return _cones_bytes(cones)

    return watch_rows.edit(eng, home, WatchlistRow, watchlist_id, requester, shared, content, _watchlist)


def _without(cones: pa.Table, remove: Sequence[str]) -> pa.Table:
    wanted = pa.array([str(r) for r in remove], pa.string())
    by_name = pc.is_in(cones["name"], value_set=wanted)
    by_id = pc.is_in(pc.cast(cones["coneId"], pa.string()), value_set=wanted)
    gone = pc.or_(pc.fill_null(by_name, False), by_id)
    found = set(cones.filter(by_name)["name"].to_pylist()) | {str(i) for i in cones.filter(by_id)["coneId"].to_pylist()}
    missing = [r for r in remove if str(r) not in found]
    if missing:
        raise RegistryError(f"no cone named (or numbered) {', '.join(map(repr, missing[:10]))} in this watchlist")
    return cones.filter(pc.invert(gone))


def delete_watchlist(
    eng: Engine, home: CatalogsHome, watchlist_id: int, *, requester: str = LOCAL_OWNER, lake: Home | None = None
) -> Watchlist:
    """Remove a watchlist, its files (under ``home``: a home folder or ``Settings.catalogs``) and its hits (in
    ``lake``; None: the home folder's own lake); its id is never given to another list."""
    return watch_rows.delete(eng, home, WatchlistRow, watchlist_id, requester, _watchlist, lake)


def get_watchlist(eng: Engine, watchlist_id: int) -> Watchlist:
    """A watchlist by id; a RegistryError when there is none."""
    return watch_rows.get(eng, WatchlistRow, watchlist_id, _watchlist)


def list_watchlists(
    eng: Engine, *, owner: str | None = None, visible_to: str | None = None, active_only: bool = False
) -> list[Watchlist]:
    """Watchlists by id; ``visible_to`` keeps the requester's own and the public ones."""
    return watch_rows.listed(eng, WatchlistRow, _watchlist, owner, visible_to, active_only)


def set_history_job(eng: Engine, kind: str, list_id: int, job_id: str) -> None:
    """Remember the newest history-matching job of a watchlist (``kind`` ``watchlist``) or watchmap."""
    with Session(eng) as session, session.begin():
        row = session.get(WatchlistRow, list_id) if kind == "watchlist" else session.get(WatchmapRow, list_id)
        if row is not None:
            row.history_job = job_id


# Watchmaps


def add_watchmap(
    eng: Engine,
    home: CatalogsHome,
    name: str,
    moc: MOC,
    kind: str,
    *,
    owner: str = LOCAL_OWNER,
    visibility: str = "private",
    group: str | None = None,
    description: str = "",
    active: bool = True,
) -> Watchmap:
    """Create a watchmap of a MOC (``catalogs.watchmap``); nothing is left behind on error."""
    shared = Shared(name, description, visibility, group, active)
    shared.check()
    if kind not in KINDS:
        raise RegistryError(f"unknown watchmap kind {kind!r}: one of {', '.join(KINDS)}")
    row = WatchmapRow(owner=owner, kind=kind, max_order=int(moc.max_order), sky_fraction=float(moc.sky_fraction))
    return watch_rows.add(eng, home, row, shared, lambda: watch_store.moc_bytes(moc), _watchmap)


def edit_watchmap(
    eng: Engine,
    home: CatalogsHome,
    watchmap_id: int,
    *,
    requester: str = LOCAL_OWNER,
    name: str | None = None,
    description: str | None = None,
    visibility: str | None = None,
    group: str | None = None,
    active: bool | None = None,
    moc: MOC | None = None,
    kind: str | None = None,
) -> tuple[Watchmap, bool]:
    """Change a watchmap; (the watchmap, whether its area changed: a new version)."""
    shared = Shared(name, description, visibility, group, active)
    shared.check()

    def content(row: WatchmapRow, root: CatalogsRoot) -> bytes | None:
        """The area of the new version, if a new one is given."""
        if moc is None:
            return None
        row.kind = kind or row.kind
        row.max_order, row.sky_fraction = int(moc.max_order), float(moc.sky_fraction)
        return watch_store.moc_bytes(moc)

    return watch_rows.edit(eng, home, WatchmapRow, watchmap_id, requester, shared, content, _watchmap)


def delete_watchmap(
    eng: Engine, home: CatalogsHome, watchmap_id: int, *, requester: str = LOCAL_OWNER, lake: Home | None = None
) -> Watchmap:
    """Remove a watchmap, its files (under ``home``: a home folder or ``Settings.catalogs``) and its hits (in
    ``lake``; None: the home folder's own lake); its id is never given to another."""
    return watch_rows.delete(eng, home, WatchmapRow, watchmap_id, requester, _watchmap, lake)


def get_watchmap(eng: Engine, watchmap_id: int) -> Watchmap:
    """A watchmap by id; a RegistryError when there is none."""
    return watch_rows.get(eng, WatchmapRow, watchmap_id, _watchmap)


def list_watchmaps(
    eng: Engine, *, owner: str | None = None, visible_to: str | None = None, active_only: bool = False
) -> list[Watchmap]:
    """Watchmaps by id; ``visible_to`` keeps the requester's own and the public ones."""
    return watch_rows.listed(eng, WatchmapRow, _watchmap, owner, visible_to, active_only)


def hidden_from(eng: Engine, viewer: str) -> tuple[list[int], list[int]]:
    """The watchlists and watchmaps whose hits ``viewer`` may not read: the private and group lists of others
    (``""``: an anonymous caller, who owns nothing)."""
    with Session(eng) as session:
        return watch_rows.hidden(session, WatchlistRow, viewer), watch_rows.hidden(session, WatchmapRow, viewer)


def active_specs(eng: Engine, home: CatalogsHome) -> tuple[tuple[WatchlistSpec, ...], tuple[WatchmapSpec, ...]]:
    """What the pipeline matches every batch against: the active watchlists and watchmaps."""
    root = root_of(home)
    lists = tuple(w.spec(root) for w in list_watchlists(eng, active_only=True))
    maps = tuple(m.spec(root) for m in list_watchmaps(eng, active_only=True))
    return lists, maps


@dataclass(frozen=True)
class ListKind:
    """The functions of one kind of list (``watchlist`` or ``watchmap``), for callers that take the kind by name."""

    get: Callable[[Engine, int], Any]
    listed: Callable[..., list[Any]]
    delete: Callable[..., Any]


LIST_KINDS = {
    "watchlist": ListKind(get_watchlist, list_watchlists, delete_watchlist),
    "watchmap": ListKind(get_watchmap, list_watchmaps, delete_watchmap),
}
