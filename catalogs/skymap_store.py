"""Skymaps kept under the catalogues' root (``Settings.catalogs``, ``_skymaps/``): one folder per map, written
whole or not at all, reached by the Dask workers through the root (``catalogs.watch_store``).

A map's folder ``<id>/`` holds ``skymap.json`` (event id and time, active window, class probabilities, areas),
``cells.parquet`` (the multi-order cells with their density and distance layers) and ``moc50.fits``,
``moc90.fits`` (the credible regions). A map is listed once its ``skymap.json`` exists, and that is written last
(locally, the whole folder is written under a hidden name and renamed into place): a reader sees a whole map or
none. Removing takes the ``skymap.json`` away first.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.time import Time
from mocpy import MOC

from nightjar import paths
from nightjar.catalogs import watch_store
from nightjar.catalogs.cache import IndexCache
from nightjar.catalogs.skymap import CREDIBLE_LEVELS, Skymap, SkymapError, SkymapIndex
from nightjar.catalogs.watch_store import root_of
from nightjar.storage import CatalogsHome, CatalogsRoot

INFO_FILE = "skymap.json"
CELLS_FILE = "cells.parquet"
DEFAULT_WINDOW_DAYS = 21.0  # Lasair's: alerts up to three weeks after the event count


@dataclass(frozen=True)
class SkymapInfo:
    """What the registry knows of a stored map (the JSON of its folder)."""

    id: int
    event_id: str
    event_time: str  # ISO 8601, UTC
    event_mjd: float
    window_days: float
    active: bool
    area50_sq_deg: float
    area90_sq_deg: float
    max_order: int
    cells: int
    ordering: str
    has_distance: bool
    classification: dict[str, float] = field(default_factory=dict)  # e.g. {"BNS": 0.9, "Terrestrial": 0.1}
    properties: dict[str, float] = field(default_factory=dict)  # e.g. {"HasNS": 0.99, "HasRemnant": 0.5}
    header: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file or notice it came from
    added: str = ""

    @property
    def window_end_mjd(self) -> float:
        """The MJD at which the map's window of alerts ends."""
        return self.event_mjd + self.window_days


@dataclass(frozen=True)
class SkymapSpec:
    """What a worker needs to match one active map (small and picklable)."""

    id: int
    folder: str  # ``paths.skymap_key`` within ``root``
    event_mjd: float
    window_days: float
    event_id: str = ""
    added: str = ""  # a map removed and another stored under its id are told apart by this
    root: CatalogsRoot | None = field(
        default=None, hash=False
    )  # where the maps live; ``folder`` is within it (None: a local folder)

    @property
    def window_end_mjd(self) -> float:
        """The MJD at which the map's window of alerts ends."""
        return self.event_mjd + self.window_days


def _folder(map_id: int) -> str:
    return paths.skymap_key(map_id)


def _ids(root: CatalogsRoot) -> list[int]:
    """The ids of the whole maps (those with their info file): one listing. None found on an object store checks
    that the store answers and holds its bucket (a StorageError naming it), never "no maps"."""
    if root.is_local:  # a folder: no listing of the hidden folders a concurrent add or remove is renaming
        names = watch_store.list_folders(root, paths.SKYMAPS_DIR)
        return sorted(int(n) for n in names if n.isdigit() and (root.path / _folder(int(n)) / INFO_FILE).is_file())
    found = [name.split("/") for name in watch_store.walk(root, paths.SKYMAPS_DIR)]
    ids = sorted(int(parts[0]) for parts in found if len(parts) == 2 and parts[0].isdigit() and parts[1] == INFO_FILE)
    if not ids:
        root.check_reachable()
    return ids


def _files(skymap: Skymap, regions: dict[int, MOC]) -> dict[str, bytes]:
    """A map's files (but its info), as the bytes to store."""
    files = {f"moc{level}.fits": watch_store.moc_bytes(moc) for level, moc in regions.items()}
    columns: dict[str, Any] = {"uniq": pa.array(skymap.uniq, pa.int64()), "probdensity": skymap.probdensity}
    for name in ("distmu", "distsigma", "distnorm"):
        layer = getattr(skymap, name)
        if layer is not None:
            columns[name] = np.asarray(layer, np.float64)
    files[CELLS_FILE] = watch_store.parquet_bytes(pa.table(columns))
    return files


def _claim(root: CatalogsRoot, files: dict[str, bytes], make_info: Callable[[int], SkymapInfo]) -> SkymapInfo:
    """Store a map's files under the next free id, its info last (a reader sees a whole map or none).

    Locally the files are written in a hidden temporary folder renamed into place: the rename fails if another add
    took the id, which is then taken again. On object storage the files are written under the id, the info last;
    two adds at the same instant may pick the same id there (object stores have no atomic rename)."""
    if not root.is_local:
        info = make_info(max(_ids(root), default=0) + 1)
        for name, data in files.items():
            watch_store.write_bytes(root, f"{_folder(info.id)}/{name}", data)
        _write_info(root, info)
        return info
    base = root.path / paths.SKYMAPS_DIR
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".new-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        while True:
            info = make_info(max(_ids(root), default=0) + 1)
            (tmp / INFO_FILE).write_text(json.dumps(asdict(info), indent=2))
            try:
                os.rename(tmp, root.path / _folder(info.id))  # atomic; fails if another add took the id
                return info
            except OSError:
                if not (root.path / _folder(info.id)).exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_info(root: CatalogsRoot, info: SkymapInfo) -> None:
    watch_store.write_bytes(root, f"{_folder(info.id)}/{INFO_FILE}", json.dumps(asdict(info), indent=2).encode())


def add_skymap(
    home: CatalogsHome,
    skymap: Skymap,
    *,
    event_id: str | None = None,
    event_time: datetime | None = None,
    window_days: float = DEFAULT_WINDOW_DAYS,
    classification: dict[str, float] | None = None,
    properties: dict[str, float] | None = None,
    source: str = "",
) -> SkymapInfo:
    """Store a checked map with its credible regions under the next free id (under ``home``: the Nightjar home,
    whose ``catalogs/`` folder holds them, or ``Settings.catalogs``); returns what was stored."""
    event_id = event_id or skymap.event_id
    event_time = event_time or skymap.event_time
    if not event_id:
        raise SkymapError("the map has no event id (header OBJECT): give one")
    if event_time is None:
        raise SkymapError("the map has no event time (header DATE-OBS or MJD-OBS): give one")
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    if not (np.isfinite(window_days) and window_days > 0):
        raise SkymapError(f"the active window must be a positive number of days, not {window_days}")
    for name, probs in (("classification", classification), ("properties", properties)):
        for key, value in (probs or {}).items():
            if not (isinstance(value, int | float) and 0.0 <= float(value) <= 1.0):
                raise SkymapError(f"{name} {key!r}: a probability must be in [0, 1], not {value!r}")
    regions = {level: skymap.credible_moc(level) for level in CREDIBLE_LEVELS}
    mjd = float(Time(event_time).mjd)
    when = event_time.astimezone(UTC).isoformat()

    def make_info(map_id: int) -> SkymapInfo:
        return SkymapInfo(
            id=map_id,
            event_id=str(event_id),
            event_time=when,
            event_mjd=mjd,
            window_days=float(window_days),
            active=True,
            area50_sq_deg=float(regions[50].sky_fraction * 41252.96124941928),
            area90_sq_deg=float(regions[90].sky_fraction * 41252.96124941928),
            max_order=int(skymap.orders.max()),
            cells=int(skymap.uniq.size),
            ordering=skymap.ordering,
            has_distance=skymap.has_distance,
            classification={k: float(v) for k, v in (classification or {}).items()},
            properties={k: float(v) for k, v in (properties or {}).items()},
            header={k: v for k, v in skymap.header.items() if isinstance(v, str | int | float)},
            source=source,
            added=datetime.now(UTC).isoformat(),
        )

    return _claim(root_of(home), _files(skymap, regions), make_info)


def _info(root: CatalogsRoot, map_id: int) -> SkymapInfo:
    return SkymapInfo(**json.loads(watch_store.read_bytes(root, f"{_folder(map_id)}/{INFO_FILE}")))


def get_skymap(home: CatalogsHome, map_id: int) -> SkymapInfo:
    """The stored info of a skymap; a SkymapError when there is none with this id."""
    root = root_of(home)
    if not watch_store.exists(root, f"{_folder(map_id)}/{INFO_FILE}"):
        raise SkymapError(f"no skymap {map_id}")
    return _info(root, map_id)


def list_skymaps(home: CatalogsHome) -> list[SkymapInfo]:
    """Every stored map, newest event first."""
    root = root_of(home)
    return sorted((_info(root, i) for i in _ids(root)), key=lambda s: (-s.event_mjd, -s.id))


def set_active(home: CatalogsHome, map_id: int, active: bool) -> SkymapInfo:
    """Match a stored skymap live (``active``) or stop matching it; its info as changed."""
    root = root_of(home)
    info = get_skymap(root, map_id)
    changed = SkymapInfo(**{**asdict(info), "active": active})
    _write_info(root, changed)
    return changed


def remove_skymap(home: CatalogsHome, map_id: int) -> None:
    """Remove a stored map (its hits are the caller's to forget: ``lake.mma_hits.forget_map``): its info first, so
    that no reader sees a partly removed map."""
    root = root_of(home)
    info = f"{_folder(map_id)}/{INFO_FILE}"
    if not watch_store.exists(root, info):
        raise SkymapError(f"no skymap {map_id}")
    if root.is_local:
        gone = root.path / paths.SKYMAPS_DIR / f".gone-{map_id}-{uuid.uuid4().hex}"
        os.rename(root.path / _folder(map_id), gone)
        shutil.rmtree(gone, ignore_errors=True)
        return
    watch_store.delete_file(root, info)
    watch_store.delete_folder(root, _folder(map_id))


def spec_of(home: CatalogsHome, info: SkymapInfo) -> SkymapSpec:
    """What a worker needs to match a stored skymap."""
    root = root_of(home)
    return SkymapSpec(info.id, _folder(info.id), info.event_mjd, info.window_days, info.event_id, info.added, root)


def active_specs(home: CatalogsHome, now: datetime | None = None, grace_days: float = 1.0) -> tuple[SkymapSpec, ...]:
    """The maps to match live: active, and whose window has not ended more than ``grace_days`` before ``now``
    (None: every active map, whatever the date; replays of old alerts need that)."""
    limit = None if now is None else float(Time(now).mjd) - grace_days
    return tuple(
        spec_of(home, info)
        for info in list_skymaps(home)
        if info.active and (limit is None or info.window_end_mjd >= limit)
    )


def load_index(spec: SkymapSpec) -> SkymapIndex:
    """Read a stored map into its matching index (a WatchStoreError naming a file that cannot be read)."""
    cells = watch_store.read_parquet(spec.root, f"{spec.folder}/{CELLS_FILE}")

    def layer(name: str) -> np.ndarray | None:
        return cells[name].to_numpy() if name in cells.column_names else None

    density = layer("probdensity")
    assert density is not None
    skymap = Skymap(cells["uniq"].to_numpy(), density, layer("distmu"), layer("distsigma"), layer("distnorm"))
    regions = {level: watch_store.read_moc(spec.root, f"{spec.folder}/moc{level}.fits") for level in CREDIBLE_LEVELS}
    return SkymapIndex.of(skymap, regions)


_CACHE: IndexCache[tuple[str, str, str], SkymapIndex] = IndexCache()


def cached_index(spec: SkymapSpec, budget_bytes: int) -> SkymapIndex:
    """This process's index of a stored map, read on first use (maps never change once stored)."""
    key = (spec.root.uri if spec.root else "", spec.folder, spec.added)
    return _CACHE.get(key, lambda: load_index(spec), budget_bytes)


def window_of(info: SkymapInfo) -> tuple[datetime, datetime]:
    """The skymap's window of alerts as UTC datetimes: from the event to ``window_days`` after."""
    start = datetime.fromisoformat(info.event_time)
    return start, start + timedelta(days=info.window_days)
