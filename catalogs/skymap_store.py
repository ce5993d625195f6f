"""Skymaps kept under ``NIGHTJAR_HOME/skymaps``: one folder per map, written whole or not at all.

A map's folder ``<id>/`` holds ``skymap.json`` (event id and time, active window, class probabilities, areas),
``cells.parquet`` (the multi-order cells with their density and distance layers) and ``moc50.fits``,
``moc90.fits`` (the credible regions). A new map is written in a hidden temporary folder and renamed into place:
a reader sees a whole map or none, and a failed add leaves nothing. Removing renames the folder away first.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.time import Time
from mocpy import MOC

from nightjar import paths
from nightjar.catalogs.cache import IndexCache
from nightjar.catalogs.skymap import CREDIBLE_LEVELS, Skymap, SkymapError, SkymapIndex

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
        return self.event_mjd + self.window_days


@dataclass(frozen=True)
class SkymapSpec:
    """What a worker needs to match one active map (small and picklable)."""

    id: int
    folder: str
    event_mjd: float
    window_days: float
    event_id: str = ""
    added: str = ""  # a map removed and another stored under its id are told apart by this

    @property
    def window_end_mjd(self) -> float:
        return self.event_mjd + self.window_days


def skymaps_dir(home: Path) -> Path:
    return home / paths.SKYMAPS_DIR


def _folder(home: Path, map_id: int) -> Path:
    return skymaps_dir(home) / str(map_id)


def _ids(home: Path) -> list[int]:
    root = skymaps_dir(home)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / INFO_FILE).is_file())


def add_skymap(
    home: Path,
    skymap: Skymap,
    *,
    event_id: str | None = None,
    event_time: datetime | None = None,
    window_days: float = DEFAULT_WINDOW_DAYS,
    classification: dict[str, float] | None = None,
    properties: dict[str, float] | None = None,
    source: str = "",
) -> SkymapInfo:
    """Store a checked map with its credible regions under the next free id; returns what was stored."""
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
    root = skymaps_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".new-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for level, moc in regions.items():
            moc.save(tmp / f"moc{level}.fits", format="fits", overwrite=True)
        columns: dict[str, Any] = {"uniq": pa.array(skymap.uniq, pa.int64()), "probdensity": skymap.probdensity}
        for name in ("distmu", "distsigma", "distnorm"):
            layer = getattr(skymap, name)
            if layer is not None:
                columns[name] = np.asarray(layer, np.float64)
        pq.write_table(pa.table(columns), tmp / CELLS_FILE)
        mjd = float(Time(event_time).mjd)
        while True:
            map_id = (max(_ids(home), default=0)) + 1
            info = SkymapInfo(
                id=map_id,
                event_id=event_id,
                event_time=event_time.astimezone(UTC).isoformat(),
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
            (tmp / INFO_FILE).write_text(json.dumps(asdict(info), indent=2))
            try:
                os.rename(tmp, _folder(home, map_id))  # atomic; fails if another add took the id
                return info
            except OSError:
                if not _folder(home, map_id).exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _info(folder: Path) -> SkymapInfo:
    return SkymapInfo(**json.loads((folder / INFO_FILE).read_text()))


def get_skymap(home: Path, map_id: int) -> SkymapInfo:
    folder = _folder(home, map_id)
    if not (folder / INFO_FILE).is_file():
        raise SkymapError(f"no skymap {map_id}")
    return _info(folder)


def list_skymaps(home: Path) -> list[SkymapInfo]:
    """Every stored map, newest event first."""
    return sorted((_info(_folder(home, i)) for i in _ids(home)), key=lambda s: (-s.event_mjd, -s.id))


def set_active(home: Path, map_id: int, active: bool) -> SkymapInfo:
    info = get_skymap(home, map_id)
    changed = SkymapInfo(**{**asdict(info), "active": active})
    folder = _folder(home, map_id)
    tmp = folder / f".{INFO_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(asdict(changed), indent=2))
    os.replace(tmp, folder / INFO_FILE)
    return changed


def remove_skymap(home: Path, map_id: int) -> None:
    """Remove a stored map (its hits are the caller's to forget: ``lake.mma_hits.forget_map``)."""
    folder = _folder(home, map_id)
    if not (folder / INFO_FILE).is_file():
        raise SkymapError(f"no skymap {map_id}")
    gone = skymaps_dir(home) / f".gone-{map_id}-{uuid.uuid4().hex}"
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def spec_of(home: Path, info: SkymapInfo) -> SkymapSpec:
    return SkymapSpec(info.id, str(_folder(home, info.id)), info.event_mjd, info.window_days, info.event_id, info.added)


def active_specs(home: Path, now: datetime | None = None, grace_days: float = 1.0) -> tuple[SkymapSpec, ...]:
    """The maps to match live: active, and whose window has not ended more than ``grace_days`` before ``now``
    (None: every active map, whatever the date; replays of old alerts need that)."""
    limit = None if now is None else float(Time(now).mjd) - grace_days
    return tuple(
        spec_of(home, info)
        for info in list_skymaps(home)
        if info.active and (limit is None or info.window_end_mjd >= limit)
    )


def load_index(spec: SkymapSpec) -> SkymapIndex:
    """Read a stored map into its matching index."""
    folder = Path(spec.folder)
    cells = pq.read_table(folder / CELLS_FILE)

    def layer(name: str) -> np.ndarray | None:
        return cells[name].to_numpy() if name in cells.column_names else None

    density = layer("probdensity")
    assert density is not None
    skymap = Skymap(cells["uniq"].to_numpy(), density, layer("distmu"), layer("distsigma"), layer("distnorm"))
    regions = {level: MOC.load(folder / f"moc{level}.fits", format="fits") for level in CREDIBLE_LEVELS}
    return SkymapIndex.of(skymap, regions)


_CACHE: IndexCache[tuple[str, str], SkymapIndex] = IndexCache()


def cached_index(spec: SkymapSpec, budget_bytes: int) -> SkymapIndex:
    """This process's index of a stored map, read on first use (maps never change once stored)."""
    return _CACHE.get((spec.folder, spec.added), lambda: load_index(spec), budget_bytes)


def window_of(info: SkymapInfo) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(info.event_time)
    return start, start + timedelta(days=info.window_days)
