"""Watchlists and watchmaps in the metadata database: add, edit, delete, list; their files under the catalogues'
root (``Settings.catalogs``, ``catalogs.watch_store``; a home folder passed as ``home`` means its ``catalogs/``).

A watchlist (named cones) or watchmap (a named sky area) belongs to an owner and has a visibility (``private``,
``public`` or ``group``, as filters; ``group`` lists are their owner's until users have groups), an active flag
and a description. Its content is a file per version (cones: Parquet sorted by HEALPix; areas: a MOC in FITS),
written (whole, from bytes in memory) inside the database transaction that records it and removed if that
transaction fails: a list is created whole or not at all. Each change of
the content (cones added, removed or replaced, a new default radius, a new area) makes a new version; the
pipeline's workers key their cached indexes by it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from mocpy import MOC
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.catalogs.watch_files import CONES_SCHEMA, WatchFileError, check_radius
from nightjar.catalogs.watch_index import HPX, WatchlistSpec, sorted_cones
from nightjar.catalogs.watch_store import root_of
from nightjar.catalogs.watchmap import KINDS, WatchmapSpec
from nightjar.lake import watch_hits
from nightjar.sql.registry import LOCAL_OWNER, RegistryError, check_name
from nightjar.sql.registry_models import VISIBILITIES, WatchlistRow, WatchmapRow
from nightjar.storage import CatalogsHome, CatalogsRoot, Home

log = logging.getLogger(__name__)
_Row = TypeVar("_Row", WatchlistRow, WatchmapRow)
_T = TypeVar("_T")
_KIND_NAME: dict[type, str] = {WatchlistRow: "watchlist", WatchmapRow: "watchmap"}

MAX_CONES = 10_000_000
DEFAULT_RADIUS_ARCSEC = 2.0


@dataclass(frozen=True)
class Watchlist:
    id: int
    name: str
    owner: str
    description: str
    visibility: str
    group: str | None
    active: bool
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
        public = self.visibility == "public"
        root = root_of(home)
        return WatchlistSpec(self.id, self.version, self.key, self.radius_arcsec, self.owner, public, root)


@dataclass(frozen=True)
class Watchmap:
    id: int
    name: str
    owner: str
    description: str
    visibility: str
    group: str | None
    active: bool
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
        public = self.visibility == "public"
        return WatchmapSpec(self.id, self.version, self.key, self.owner, public, root_of(home))

    @property
    def area_sq_deg(self) -> float:
        return self.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2


def _watchlist(row: WatchlistRow) -> Watchlist:
    return Watchlist(
        row.id,
        row.name,
        row.owner,
        row.description,
        row.visibility,
        row.group_name,
        row.active,
        row.radius_arcsec,
        row.version,
        row.cones,
        row.history_job,
        row.created,
        row.updated,
    )


def _watchmap(row: WatchmapRow) -> Watchmap:
    return Watchmap(
        row.id,
        row.name,
        row.owner,
        row.description,
        row.visibility,
        row.group_name,
        row.active,
        row.kind,
        row.max_order,
        row.sky_fraction,
        row.version,
        row.history_job,
        row.created,
        row.updated,
    )


def _visibility(value: str) -> str:
    if value not in VISIBILITIES:
        raise RegistryError(f"unknown visibility {value!r}: choose one of {', '.join(VISIBILITIES)}")
    return value


def can_see(owner: str, visibility: str, requester: str | None, admin: bool = False) -> bool:
    """Whether ``requester`` (None: anonymous) may see a list: public, their own, or any to an admin."""
    return visibility == "public" or admin or (requester is not None and owner == requester)


def _write_cones(root: CatalogsRoot, watchlist_id: int, version: int, cones: pa.Table) -> str:
    key = paths.watchlist_key(watchlist_id, version)
    table = cones if HPX in cones.column_names else sorted_cones(cones)
    watch_store.write_bytes(root, key, watch_store.parquet_bytes(table, row_group_size=1 << 20))
    return key


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0]


def _drop_old_files(root: CatalogsRoot, folder: str, keep_from: int) -> None:
    """Files of versions before ``keep_from`` (a batch in flight may still read the previous version)."""
    for name in watch_store.list_files(root, folder):
        number = name.split(".", 1)[0].removeprefix("v")
        if name.startswith("v") and number.isdigit() and int(number) < keep_from:
            watch_store.delete_file(root, f"{folder}/{name}")


def _forget_written(root: CatalogsRoot, written: str | None) -> None:
    """Remove a file written for a transaction that failed (a file left behind is only logged: the transaction's
    own error is the one to raise, and no row names the file)."""
    if written is None:
        return
    try:
        watch_store.delete_file(root, written)
    except OSError as exc:
        log.warning("could not remove %s after a failed change: %s", watch_store.uri_of(root, written), exc)


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
    check_name(name)
    _visibility(visibility)
    check_radius(radius_arcsec)
    _check_cones(cones)
    root = root_of(home)
    written: str | None = None
    try:
        with Session(eng) as session, session.begin():
            clash = session.scalar(select(WatchlistRow).where(WatchlistRow.owner == owner, WatchlistRow.name == name))
            if clash is not None:
                raise RegistryError(f"{owner} already has a watchlist named {name!r} (id {clash.id})")
            row = WatchlistRow(
                owner=owner,
                name=name,
                description=description,
                visibility=visibility,
                group_name=group,
                active=active,
                radius_arcsec=float(radius_arcsec),
                version=1,
                cones=cones.num_rows,
            )
            session.add(row)
            session.flush()
            written = _write_cones(root, row.id, 1, cones)
            return _watchlist(row)
    except BaseException:
        _forget_written(root, written)
        raise


def read_cones(home: CatalogsHome, watchlist: Watchlist) -> pa.Table:
    """The cones of a watchlist's current version (``CONES_SCHEMA``, by coneId)."""
    table = watch_store.read_parquet(root_of(home), watchlist.key).select(CONES_SCHEMA.names)
    return table.sort_by("coneId")


def _load(session: Session, kind: type[_Row], list_id: int) -> _Row:
    row = session.get(kind, list_id)
    if row is None:
        raise RegistryError(f"no {_KIND_NAME[kind]} {list_id}")
    return row


def _delete(
    eng: Engine,
    home: CatalogsHome,
    kind: type[_Row],
    list_id: int,
    requester: str,
    convert: Callable[[_Row], _T],
    lake: Home | None = None,
) -> _T:
    """Remove a watchlist or watchmap (its owner's request), its files and its hits; returns it as it was."""
    lake = watch_store.lake_for(home, lake)
    with Session(eng) as session, session.begin():
        row = _load(session, kind, list_id)
        _owned(row.owner, requester, f"{_KIND_NAME[kind]} {list_id}")
        gone, version = convert(row), row.version
        session.delete(row)
    key_of, hits = (
        (paths.watchlist_key, paths.WATCHLIST_HITS) if kind is WatchlistRow else (paths.watchmap_key, paths.AREA_HITS)
    )
    root = root_of(home)
    folder = _folder(key_of(list_id, 1))
    _drop_old_files(root, folder, version + 1)
    if not watch_store.list_files(root, folder):
        watch_store.delete_folder(root, folder)
    watch_hits.forget_list(lake, hits, list_id)
    return gone


def _listed(
    eng: Engine,
    kind: type[_Row],
    convert: Callable[[_Row], _T],
    owner: str | None,
    visible_to: str | None,
    active_only: bool,
) -> list[_T]:
    """Watchlists or watchmaps by id; ``visible_to`` keeps the requester's own and the public ones."""
    with Session(eng) as session:
        query = select(kind).order_by(kind.id)
        if owner is not None:
            query = query.where(kind.owner == owner)
        if visible_to is not None:
            query = query.where((kind.owner == visible_to) | (kind.visibility == "public"))
        if active_only:
            query = query.where(kind.active.is_(True))
        return [convert(row) for row in session.scalars(query)]


def _owned(owner: str, requester: str, what: str) -> None:
    if owner != requester:
        raise RegistryError(f"{what} belongs to {owner}, not {requester}")


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
    if name is not None:
        check_name(name)
    if visibility is not None:
        _visibility(visibility)
    if radius_arcsec is not None:
        check_radius(radius_arcsec)
    root = root_of(home)
    written: str | None = None
    try:
        with Session(eng) as session, session.begin():
            row = _load(session, WatchlistRow, watchlist_id)
            _owned(row.owner, requester, f"watchlist {watchlist_id}")
            if name is not None and name != row.name:
                clash = session.scalar(
                    select(WatchlistRow).where(WatchlistRow.owner == row.owner, WatchlistRow.name == name)
                )
                if clash is not None:
                    raise RegistryError(f"{row.owner} already has a watchlist named {name!r} (id {clash.id})")
                row.name = name
            if description is not None:
                row.description = description
            if visibility is not None:
                row.visibility = visibility
            if group is not None:
                row.group_name = group
            if active is not None:
                row.active = active
            changed = radius_arcsec is not None and float(radius_arcsec) != row.radius_arcsec
            if radius_arcsec is not None:
                row.radius_arcsec = float(radius_arcsec)
            cones = None
            if replace is not None or add is not None or remove:
                current = replace if replace is not None else read_cones(root, _watchlist(row))
                if remove:
                    current = _without(current, remove)
                if add is not None and add.num_rows:
                    start = int(pc.max(current["coneId"]).as_py() or 0) if current.num_rows else 0
                    ids = pa.array(np.arange(start + 1, start + 1 + add.num_rows, dtype=np.int64))
                    fresh = add.select(CONES_SCHEMA.names).set_column(0, "coneId", ids)
                    current = pa.concat_tables([current.select(CONES_SCHEMA.names).cast(CONES_SCHEMA), fresh])
                _check_cones(current)
                cones = current
                changed = True
            if changed:
                row.version += 1
                if cones is None:
                    cones = watch_store.read_parquet(root, paths.watchlist_key(row.id, row.version - 1))
                if cones is not None:
                    written = _write_cones(root, row.id, row.version, cones)
                    row.cones = cones.num_rows
            session.flush()
            result = _watchlist(row)
    except BaseException:
        _forget_written(root, written)
        raise
    if changed:
        _drop_old_files(root, _folder(result.key), result.version - 1)
    return result, changed


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
    return _delete(eng, home, WatchlistRow, watchlist_id, requester, _watchlist, lake)


def get_watchlist(eng: Engine, watchlist_id: int) -> Watchlist:
    with Session(eng) as session:
        return _watchlist(_load(session, WatchlistRow, watchlist_id))


def list_watchlists(
    eng: Engine, *, owner: str | None = None, visible_to: str | None = None, active_only: bool = False
) -> list[Watchlist]:
    """Watchlists by id; ``visible_to`` keeps the requester's own and the public ones."""
    return _listed(eng, WatchlistRow, _watchlist, owner, visible_to, active_only)


def set_history_job(eng: Engine, kind: str, list_id: int, job_id: str) -> None:
    """Remember the newest history-matching job of a watchlist (``kind`` ``watchlist``) or watchmap."""
    with Session(eng) as session, session.begin():
        row = session.get(WatchlistRow, list_id) if kind == "watchlist" else session.get(WatchmapRow, list_id)
        if row is not None:
            row.history_job = job_id


# Watchmaps


def _write_moc(root: CatalogsRoot, watchmap_id: int, version: int, moc: MOC) -> str:
    key = paths.watchmap_key(watchmap_id, version)
    watch_store.write_bytes(root, key, watch_store.moc_bytes(moc))
    return key


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
    check_name(name)
    _visibility(visibility)
    if kind not in KINDS:
        raise RegistryError(f"unknown watchmap kind {kind!r}: one of {', '.join(KINDS)}")
    root = root_of(home)
    written: str | None = None
    try:
        with Session(eng) as session, session.begin():
            clash = session.scalar(select(WatchmapRow).where(WatchmapRow.owner == owner, WatchmapRow.name == name))
            if clash is not None:
                raise RegistryError(f"{owner} already has a watchmap named {name!r} (id {clash.id})")
            row = WatchmapRow(
                owner=owner,
                name=name,
                description=description,
                visibility=visibility,
                group_name=group,
                active=active,
                kind=kind,
                max_order=int(moc.max_order),
                sky_fraction=float(moc.sky_fraction),
                version=1,
            )
            session.add(row)
            session.flush()
            written = _write_moc(root, row.id, 1, moc)
            return _watchmap(row)
    except BaseException:
        _forget_written(root, written)
        raise


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
    if name is not None:
        check_name(name)
    if visibility is not None:
        _visibility(visibility)
    root = root_of(home)
    written: str | None = None
    try:
        with Session(eng) as session, session.begin():
            row = _load(session, WatchmapRow, watchmap_id)
            _owned(row.owner, requester, f"watchmap {watchmap_id}")
            if name is not None and name != row.name:
                clash = session.scalar(
                    select(WatchmapRow).where(WatchmapRow.owner == row.owner, WatchmapRow.name == name)
                )
                if clash is not None:
                    raise RegistryError(f"{row.owner} already has a watchmap named {name!r} (id {clash.id})")
                row.name = name
            if description is not None:
                row.description = description
            if visibility is not None:
                row.visibility = visibility
            if group is not None:
                row.group_name = group
            if active is not None:
                row.active = active
            if moc is not None:
                row.version += 1
                row.kind = kind or row.kind
                row.max_order, row.sky_fraction = int(moc.max_order), float(moc.sky_fraction)
                written = _write_moc(root, row.id, row.version, moc)
            session.flush()
            result = _watchmap(row)
    except BaseException:
        _forget_written(root, written)
        raise
    if moc is not None:
        _drop_old_files(root, _folder(result.key), result.version - 1)
    return result, moc is not None


def delete_watchmap(
    eng: Engine, home: CatalogsHome, watchmap_id: int, *, requester: str = LOCAL_OWNER, lake: Home | None = None
) -> Watchmap:
    """Remove a watchmap, its files (under ``home``: a home folder or ``Settings.catalogs``) and its hits (in
    ``lake``; None: the home folder's own lake); its id is never given to another."""
    return _delete(eng, home, WatchmapRow, watchmap_id, requester, _watchmap, lake)


def get_watchmap(eng: Engine, watchmap_id: int) -> Watchmap:
    with Session(eng) as session:
        return _watchmap(_load(session, WatchmapRow, watchmap_id))


def list_watchmaps(
    eng: Engine, *, owner: str | None = None, visible_to: str | None = None, active_only: bool = False
) -> list[Watchmap]:
    """Watchmaps by id; ``visible_to`` keeps the requester's own and the public ones."""
    return _listed(eng, WatchmapRow, _watchmap, owner, visible_to, active_only)


def hidden_from(eng: Engine, viewer: str) -> tuple[list[int], list[int]]:
    """The watchlists and watchmaps whose hits ``viewer`` may not read: the private and group lists of others
    (``""``: an anonymous caller, who owns nothing)."""
    with Session(eng) as session:
        lists = session.scalars(
            select(WatchlistRow.id).where(WatchlistRow.visibility != "public", WatchlistRow.owner != viewer)
        )
        maps = session.scalars(
            select(WatchmapRow.id).where(WatchmapRow.visibility != "public", WatchmapRow.owner != viewer)
        )
        return list(lists), list(maps)


def active_specs(eng: Engine, home: CatalogsHome) -> tuple[tuple[WatchlistSpec, ...], tuple[WatchmapSpec, ...]]:
    """What the pipeline matches every batch against: the active watchlists and watchmaps."""
    root = root_of(home)
    lists = tuple(w.spec(root) for w in list_watchlists(eng, active_only=True))
    maps = tuple(m.spec(root) for m in list_watchmaps(eng, active_only=True))
    return lists, maps
