"""Moving an older home's watch files (``NIGHTJAR_HOME/watchlists``, ``watchmaps``, ``skymaps``) under the
catalogues' root, where the Dask workers reach them (``catalogs.watch_store``).

To a local root each folder is renamed into place (or, when the target already holds files, each file absent
there is moved). To object storage each file absent there is copied (read whole, written in one request), then the
local folder is renamed ``<name>.uploaded``: user data is never deleted. Every step checks what is already done,
so a migration stopped midway completes on the next start, and two processes starting at once (a ``nightjar run``
and a ``nightjar serve``) take turns on a lock file in the home, which is local by construction.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from nightjar.storage import catalogs_root
>>> home = Path(tempfile.mkdtemp())
>>> (home / "watchlists" / "1").mkdir(parents=True)
>>> _ = (home / "watchlists" / "1" / "v1.parquet").write_bytes(b"PAR1")
>>> migrate_watch_files(home, catalogs_root(home))
['watchlists']
>>> sorted(p.relative_to(home).as_posix() for p in home.rglob("*.parquet"))
['catalogs/_watch/watchlists/1/v1.parquet']
>>> migrate_watch_files(home, catalogs_root(home))
[]
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.settings import Settings
from nightjar.storage import CatalogsRoot

log = logging.getLogger(__name__)

# (the older home's folder, its place under the catalogues' root)
MOVES: tuple[tuple[str, str], ...] = (
    (paths.OLD_WATCHLISTS_DIR, f"{paths.WATCH_DIR}/{paths.WATCHLISTS_DIR}"),
    (paths.OLD_WATCHMAPS_DIR, f"{paths.WATCH_DIR}/{paths.WATCHMAPS_DIR}"),
    (paths.OLD_SKYMAPS_DIR, paths.SKYMAPS_DIR),
)


def _pending(home: Path) -> list[tuple[Path, str]]:
    return [(home / old, new) for old, new in MOVES if (home / old).is_dir()]


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold the home's migration lock (an exclusive ``flock``, released when the process ends, however it ends)."""
    with open(home / paths.WATCH_MIGRATION_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _files(folder: Path) -> list[Path]:
    """The files to carry: every file but the hidden leftovers of an interrupted write (``.new-*``, ``.gone-*``,
    ``*.partial``)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and not p.name.endswith(".partial")
    )


def _to_local(old: Path, target: Path) -> None:
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(old, target)  # a rename on the same file system
        return
    for file in _files(old):
        destination = target / file.relative_to(old)
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(file, destination)
    # What is left (files the root already held, leftovers) is kept beside, never deleted.
    old.rename(old.with_name(old.name + paths.OLD_UPLOADED_SUFFIX))


def _to_store(old: Path, root: CatalogsRoot, target: str) -> None:
    for file in _files(old):
        key = f"{target}/{file.relative_to(old).as_posix()}"
        if not watch_store.exists(root, key):
            watch_store.write_bytes(root, key, file.read_bytes())
    uploaded = old.with_name(old.name + paths.OLD_UPLOADED_SUFFIX)
    if uploaded.exists():  # an earlier upload's folder: keep both
        uploaded = old.with_name(f"{old.name}{paths.OLD_UPLOADED_SUFFIX}-{uuid.uuid4().hex[:8]}")
    old.rename(uploaded)


def migrate_watch_files(home: Path, root: CatalogsRoot) -> list[str]:
    """Move the watch folders of an older home (``home``) under ``root``; the names of the folders moved.

    Cheap when there is nothing to move (three look-ups, no lock); safe to call on every start, by any number of
    processes at once."""
    if not _pending(home):
        return []
    moved = []
    with _locked(home):
        for old, new in _pending(home):  # again, under the lock: another process may have moved them meanwhile
            if root.is_local:
                _to_local(old, root.path / new)
            else:
                _to_store(old, root, new)
            moved.append(old.name)
    return moved


def watch_root(settings: Settings) -> CatalogsRoot:
    """Where the watch files live (``Settings.catalogs``), once an older home's have been moved there."""
    root = settings.catalogs
    home = Path(settings.home)
    if home.is_dir():
        for name in migrate_watch_files(home, root):
            log.info("moved %s to %s", home / name, root.uri)
    return root
