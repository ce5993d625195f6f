"""What watchlists and watchmaps share in the metadata database: add, load, edit, list and delete a row of either
(``WatchlistRow`` or ``WatchmapRow``, the ``kind``), with the file of each version of its content under the
catalogues' root and its hits in the lake. ``sql.watch_registry`` holds what differs (cones or areas) and the
public functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.catalogs.watch_store import root_of
from nightjar.lake import watch_hits
from nightjar.sql.registry import RegistryError, check_name, check_owner, fetch
from nightjar.sql.registry_models import VISIBILITIES, WatchlistRow, WatchmapRow
from nightjar.storage import CatalogsHome, CatalogsRoot, Home

log = logging.getLogger(__name__)
Row = TypeVar("Row", WatchlistRow, WatchmapRow)
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """What differs between watchlists and watchmaps in the database and the catalogues' root."""

    name: str
    key_of: Callable[[int, int], str]


KINDS: dict[type, Kind] = {
    WatchlistRow: Kind("watchlist", paths.watchlist_key),
    WatchmapRow: Kind("watchmap", paths.watchmap_key),
}


@dataclass(frozen=True)
class Shared:
    """The columns a watchlist and a watchmap share, as given to create or change one (None: unchanged)."""

    name: str | None = None
    description: str | None = None
    visibility: str | None = None
    group: str | None = None
    active: bool | None = None

    def check(self) -> None:
        """A RegistryError for an invalid name or an unknown visibility."""
        if self.name is not None:
            check_name(self.name)
        if self.visibility is not None and self.visibility not in VISIBILITIES:
            raise RegistryError(f"unknown visibility {self.visibility!r}: choose one of {', '.join(VISIBILITIES)}")

    def apply(self, session: Session, row: Row) -> None:
        """Set the given columns of ``row``; a new name must be free among its owner's lists of its kind."""
        if self.name is not None and self.name != row.name:
            name_free(session, type(row), row.owner, self.name)
            row.name = self.name
        if self.description is not None:
            row.description = self.description
        if self.visibility is not None:
            row.visibility = self.visibility
        if self.group is not None:
            row.group_name = self.group
        if self.active is not None:
            row.active = self.active


def folder_of(key: str) -> str:
    """The folder of a watch file's key."""
    return key.rsplit("/", 1)[0]


def drop_old_files(root: CatalogsRoot, folder: str, keep_from: int) -> None:
    """Files of versions before ``keep_from`` (a batch in flight may still read the previous version)."""
    for name in watch_store.list_files(root, folder):
        number = name.split(".", 1)[0].removeprefix("v")
        if name.startswith("v") and number.isdigit() and int(number) < keep_from:
            watch_store.delete_file(root, f"{folder}/{name}")


class Files:
    """The files written for one database transaction: each version's content, under the catalogues' root."""

    def __init__(self, root: CatalogsRoot, kind: type) -> None:
        self.root, self.key_of = root, KINDS[kind].key_of
        self.written: list[str] = []

    def put(self, list_id: int, version: int, content: bytes) -> None:
        """Write a version's content and note its key."""
        key = self.key_of(list_id, version)
        watch_store.write_bytes(self.root, key, content)
        self.written.append(key)

    def forget(self) -> None:
        """Remove them after the transaction failed (a file left behind is only logged: the transaction's own error
        is the one to raise, and no row names the file)."""
        for key in self.written:
            try:
                watch_store.delete_file(self.root, key)
            except OSError as exc:
                log.warning("could not remove %s after a failed change: %s", watch_store.uri_of(self.root, key), exc)


@contextmanager
def transaction(eng: Engine, home: CatalogsHome, kind: type) -> Iterator[tuple[Session, Files]]:
    """A database transaction and the files written for it: they are removed if it fails."""
    files = Files(root_of(home), kind)
    try:
        with Session(eng) as session, session.begin():
            yield session, files
    except BaseException:
        files.forget()
        raise


def name_free(session: Session, kind: type[Row], owner: str, name: str) -> None:
    """A RegistryError if ``owner`` already has a list of this kind named ``name``."""
    clash = session.scalar(select(kind).where(kind.owner == owner, kind.name == name))
    if clash is not None:
        raise RegistryError(f"{owner} already has a {KINDS[kind].name} named {name!r} (id {clash.id})")


def load(session: Session, kind: type[Row], list_id: int) -> Row:
    """A list's row by id; a RegistryError when there is none."""
    return fetch(session, kind, list_id, KINDS[kind].name)


def owned(row: Row, requester: str) -> None:
    """A RegistryError unless ``requester`` owns the list."""
    check_owner(f"{KINDS[type(row)].name} {row.id}", row.owner, requester)


def add(
    eng: Engine,
    home: CatalogsHome,
    row: Row,
    shared: Shared,
    content: Callable[[], bytes],
    convert: Callable[[Row], T],
) -> T:
    """Insert ``row`` (a new list's own columns) with the ``shared`` ones, as version 1, and the file of its
    ``content``: both or neither."""
    with transaction(eng, home, type(row)) as (session, files):
        shared.apply(session, row)  # a name free among the owner's lists
        row.version = 1
        session.add(row)
        session.flush()
        files.put(row.id, 1, content())
        made = convert(row)
    return made


def edit(
    eng: Engine,
    home: CatalogsHome,
    kind: type[Row],
    list_id: int,
    requester: str,
    shared: Shared,
    content: Callable[[Row, CatalogsRoot], bytes | None],
    convert: Callable[[Row], T],
) -> tuple[T, bool]:
    """Change a list (its owner's request): the ``shared`` columns, then ``content``, which sets the row's own
    columns and gives the content of a new version (None: no new version); (the list, whether a new version)."""
    with transaction(eng, home, kind) as (session, files):
        row = load(session, kind, list_id)
        owned(row, requester)
        shared.apply(session, row)
        new = content(row, files.root)
        if new is not None:
            row.version += 1
            files.put(row.id, row.version, new)
        session.flush()
        result, version = convert(row), row.version
    if new is not None:
        drop_old_files(files.root, folder_of(files.key_of(list_id, version)), version - 1)
    return result, new is not None


def get(eng: Engine, kind: type[Row], list_id: int, convert: Callable[[Row], T]) -> T:
    """A list by id, converted by ``convert``; a RegistryError when there is none."""
    with Session(eng) as session:
        return convert(load(session, kind, list_id))


def delete(
    eng: Engine,
    home: CatalogsHome,
    kind: type[Row],
    list_id: int,
    requester: str,
    convert: Callable[[Row], T],
    lake: Home | None = None,
) -> T:
    """Remove a list (its owner's request), its files and its hits; returns it as it was."""
    lake = watch_store.lake_for(home, lake)
    with Session(eng) as session, session.begin():
        row = load(session, kind, list_id)
        owned(row, requester)
        gone, version = convert(row), row.version
        session.delete(row)
    root = root_of(home)
    where = folder_of(KINDS[kind].key_of(list_id, 1))
    drop_old_files(root, where, version + 1)
    if not watch_store.list_files(root, where):
        watch_store.delete_folder(root, where)
    watch_hits.forget_list(lake, paths.LIST_HITS[KINDS[kind].name], list_id)
    return gone


def listed(
    eng: Engine,
    kind: type[Row],
    convert: Callable[[Row], T],
    owner: str | None,
    visible_to: str | None,
    active_only: bool,
) -> list[T]:
    """Lists by id; ``visible_to`` keeps the requester's own and the public ones."""
    with Session(eng) as session:
        query = select(kind).order_by(kind.id)
        if owner is not None:
            query = query.where(kind.owner == owner)
        if visible_to is not None:
            query = query.where((kind.owner == visible_to) | (kind.visibility == "public"))
        if active_only:
            query = query.where(kind.active.is_(True))
        return [convert(row) for row in session.scalars(query)]


def hidden(session: Session, kind: type[Row], viewer: str) -> list[int]:
    """The ids of the lists whose hits ``viewer`` may not read: the private and group lists of others."""
    return list(session.scalars(select(kind.id).where(kind.visibility != "public", kind.owner != viewer)))
