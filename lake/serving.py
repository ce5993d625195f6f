"""The lake as a server reads it: one snapshot's datasets, cone index and cutout store, kept between requests.

Opening the Delta tables costs tens of milliseconds and a cone or cutout index reads every file footer, so a
server keeps them and only looks for a newer lake version, at most once per ``check_interval_s``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import object_states, read
from nightjar.lake import tables as lake_tables
from nightjar.lake.lookup import ConeSearch, CutoutStore, KeyIndex
from nightjar.storage import Home, LakeRoot


@dataclass
class Snapshot:
    """One consistent state of the lake; the cone index and the cutout store are built on first use."""

    home: Home
    key: tuple[int, ...]
    tables: dict[str, ds.Dataset]
    versions: dict[str, int]
    states: object_states.States | None = None  # which objects rows are current (merge-on-read)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cone: ConeSearch | None = None
    _cutouts: CutoutStore | None = None
    _objects: KeyIndex | None = None

    def object_index(self) -> KeyIndex | None:
        """The objects table's rows by diaObjectId (None when the lake has no objects)."""
        if paths.OBJECTS not in self.tables:
            return None
        with self._lock:
            if self._objects is None:
                self._objects = KeyIndex(self.home, paths.OBJECTS, "diaObjectId", self.versions.get(paths.OBJECTS))
            return self._objects

    def cone(self, ra: float, dec: float, radius_arcsec: float, columns: list[str]) -> pa.Table:
        """Objects within the radius, with ``sep_arcsec`` (empty when the lake has no objects)."""
        if paths.OBJECTS not in self.tables:
            return pa.table({c: pa.array([], pa.float64()) for c in [*columns, "sep_arcsec"]})
        with self._lock:
            if self._cone is None:
                self._cone = ConeSearch(self.home, paths.OBJECTS, self.versions.get(paths.OBJECTS), self.states)
            search = self._cone
        return search(ra, dec, radius_arcsec, columns)

    def cutouts(self, dia_source_id: int) -> dict[str, bytes | None] | None:
        """The three cutouts of an alert, or None."""
        if paths.CUTOUTS not in self.tables:
            return None
        with self._lock:
            if self._cutouts is None:
                self._cutouts = CutoutStore(self.home, self.versions.get(paths.CUTOUTS))
            # Parquet readers are shared; one lookup at a time keeps them safe (a lookup takes milliseconds).
            return self._cutouts.get(dia_source_id)


def _state_key(home: Home) -> tuple[int, ...]:
    """What changes when the lake does: the lake log's version, else every table's version."""
    version = read.lake_version(home)
    if version is not None:
        return (version,)
    return tuple(read.table_versions(home).get(t, -1) for t in paths.TABLES)


class LakeReader:
    """The current lake snapshot for a serving process; thread-safe."""

    def __init__(self, home: Home, check_interval_s: float = 1.0) -> None:
        self.home: Home = home if isinstance(home, LakeRoot) else Path(home)
        self.check_interval_s = check_interval_s
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Check for a newer snapshot on the next call: this process just wrote to the lake (read-your-writes)."""
        with self._lock:
            self._checked = float("-inf")

    def snapshot(self) -> Snapshot:
        """The newest snapshot (checked at most once per ``check_interval_s``, and after ``invalidate``)."""
        with self._lock:
            now = time.monotonic()
            if self._snapshot is not None and now - self._checked < self.check_interval_s:
                return self._snapshot
            self._checked = now
            key = _state_key(self.home)
            if self._snapshot is None or key != self._snapshot.key:
                self._snapshot = _open(self.home, key)
            return self._snapshot


def _open(home: Home, key: tuple[int, ...]) -> Snapshot:
    logged = read.snapshot(home)
    tables, versions = {}, {}
    states = None
    for table in read.existing_tables(home):
        # A table that joined the lake after its last logged batch is read at its latest version.
        dt = lake_tables.load(home, table, logged.get(table))
        tables[table] = read.arrow_dataset(dt)
        versions[table] = dt.version()
        if table == paths.OBJECTS:
            states = object_states.states(dt, tables[table])
            tables[table] = object_states.apply(states, tables[table])
    return Snapshot(home, key, tables, versions, states)
