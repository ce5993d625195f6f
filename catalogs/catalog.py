"""What Nightjar records about each catalogue (``nightjar.json``), and the handles stages receive.

A :class:`CatalogSet` is the explicit catalogue input of the context stage: small, picklable, and versioned, so
that a worker's cached indexes are reused only while the catalogues and rules are unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict

from nightjar import storage
from nightjar.catalogs import layout
from nightjar.catalogs.rules import ContextRules, Kind
from nightjar.storage import CatalogsHome, CatalogsRoot, catalogs_root

AxisUnit = Literal["arcsec", "arcmin", "deg"]
ARCSEC_PER_UNIT: dict[str, float] = {"arcsec": 1.0, "arcmin": 60.0, "deg": 3600.0}


class ColumnMap(BaseModel):
    """Which source columns hold the standard quantities."""

    model_config = ConfigDict(extra="forbid")

    ra: str
    dec: str
    id: str | None = None
    z: str | None = None
    photo_z: str | None = None
    major_axis: str | None = None
    major_axis_unit: AxisUnit = "arcsec"
    mag: str | None = None
    type: str | None = None
    distance: str | None = None
    keep_types: list[str] | None = None

    def source_columns(self) -> list[str]:
        """The source columns the mapping reads."""
        named = [self.ra, self.dec, self.id, self.z, self.photo_z, self.major_axis, self.mag, self.type, self.distance]
        return [c for c in named if c is not None]


class CatalogInfo(BaseModel):
    """The ``nightjar.json`` of a catalogue collection."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind
    version: str
    created: str
    description: str = ""
    sources: list[str] = []
    columns: ColumnMap
    radius_arcsec: float | None = None
    mag_filter: str | None = None
    rows: int = 0
    dropped_rows: int = 0
    partitions: int = 0
    margin_rows: int = 0
    margin_threshold_arcsec: float = 0.0
    max_reach_arcsec: float = 0.0
    rules: ContextRules = ContextRules()


def _filesystem(fs: pafs.FileSystem | None) -> pafs.FileSystem:
    return fs if fs is not None else pafs.LocalFileSystem()


def read_info(collection: PurePath, fs: pafs.FileSystem | None = None) -> CatalogInfo:
    """The ``nightjar.json`` of a collection folder (on ``fs``; default: the local file system)."""
    fs = _filesystem(fs)
    path = collection / layout.INFO_FILE
    if not storage.file_exists(fs, path):
        raise FileNotFoundError(f"not a Nightjar catalogue (no {layout.INFO_FILE}): {collection}")
    return CatalogInfo.model_validate_json(storage.read_text(fs, path))


def write_info(collection: PurePath, info: CatalogInfo, fs: pafs.FileSystem | None = None) -> None:
    """Write a catalogue's info file into its collection."""
    storage.write_text(_filesystem(fs), collection / layout.INFO_FILE, info.model_dump_json(indent=1) + "\n")


def list_catalogs(home: CatalogsHome) -> list[CatalogInfo]:
    """Every catalogue installed under the home (or at ``NIGHTJAR_CATALOGS_URI``), by name.

    The catalogues' store must answer: an unreachable one, or a missing bucket, raises (naming the location); it
    never reads as "no catalogues".
    """
    where = catalogs_root(home)
    fs = where.filesystem()
    where.check_reachable(fs)
    base = layout.root(where)
    try:
        names = storage.list_folders(fs, base)
    except OSError as exc:
        raise OSError(f"cannot list the catalogues at {where.uri}: {exc}") from exc
    found = []
    for name in names:
        child = base / name
        if name.startswith(".") or not storage.file_exists(fs, child / layout.INFO_FILE):
            continue
        found.append(read_info(child, fs))
    return found


@dataclass(frozen=True)
class CatalogHandle:
    """One catalogue as the crossmatch sees it: where it lives, its partitions, and how to read its rows."""

    name: str
    kind: Kind
    version: str
    collection: PurePath  # a path on ``root.filesystem()``
    margin: PurePath | None
    orders: tuple[int, ...]
    pixels: tuple[int, ...]
    radius_arcsec: float | None = None
    mag_filter: str | None = None
    description: str = ""
    max_reach_arcsec: float = 0.0
    has_ids: bool = True  # False: rows were numbered at import, ids mean nothing outside the catalogue
    root: CatalogsRoot | None = field(
        default=None, hash=False
    )  # where the catalogues live (None: the local file system)

    @property
    def primary(self) -> PurePath:
        """The folder of the catalogue's primary HATS catalogue in its collection."""
        return layout.primary_dir(self.collection)

    def filesystem(self) -> pafs.FileSystem:
        """The file system holding the catalogue's files (on a Dask worker too)."""
        return storage.filesystem_of(self.root)

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Partition ranges in order-29 index space, sorted: (starts, ends, partition number)."""
        orders = np.asarray(self.orders, dtype=np.int64)
        pixels = np.asarray(self.pixels, dtype=np.int64)
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - orders)
        starts = pixels << shift
        ends = (pixels + 1) << shift
        order = np.argsort(starts)
        return starts[order], ends[order], order


def _partition_info(fs: pafs.FileSystem, catalog_dir: PurePath) -> tuple[list[int], list[int]]:
    """Orders and pixels of a HATS catalogue's ``partition_info.csv`` (columns ``Norder``, ``Npix``)."""
    with fs.open_input_stream(str(catalog_dir / layout.PARTITION_INFO)) as stream:
        table = pacsv.read_csv(stream)
    return table["Norder"].to_pylist(), table["Npix"].to_pylist()


def open_handle(collection: PurePath, root: CatalogsRoot | None = None) -> CatalogHandle:
    """A handle on an installed catalogue collection (reads its ``partition_info.csv``), on ``root``'s file system
    (default: the local one)."""
    fs = storage.filesystem_of(root)
    info = read_info(collection, fs)
    orders, pixels = _partition_info(fs, layout.primary_dir(collection))
    margin = layout.margin_dir(collection, info.margin_threshold_arcsec)
    has_margin = storage.file_exists(fs, margin / layout.PARTITION_INFO)
    return CatalogHandle(
        name=info.name,
        kind=info.kind,
        version=info.version,
        collection=collection,
        margin=margin if has_margin else None,
        orders=tuple(int(o) for o in orders),
        pixels=tuple(int(p) for p in pixels),
        radius_arcsec=info.radius_arcsec,
        mag_filter=info.mag_filter,
        description=info.description,
        max_reach_arcsec=info.max_reach_arcsec,
        has_ids=info.columns.id is not None,
        root=root,
    )


@dataclass(frozen=True)
class CatalogSet:
    """The catalogues and rules of context classification; the explicit input of ``context.classify``.

    ``cache_bytes`` bounds the memory each process spends on cached partition indexes.
    """

    catalogs: tuple[CatalogHandle, ...]
    rules: ContextRules = field(default_factory=ContextRules)
    cache_bytes: int = 2 << 30

    @property
    def version(self) -> str:
        """Changes whenever a catalogue is re-imported or the rules change: context must then be recomputed."""
        text = ";".join(f"{c.name}={c.version}" for c in self.catalogs) + ";" + self.rules.key()
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_catalog_set(
    home: CatalogsHome, names: list[str] | None = None, rules: ContextRules | None = None, cache_mb: int = 2048
) -> CatalogSet:
    """The installed catalogues (all, or those named) as a :class:`CatalogSet`, from the home's ``catalogs/``
    folder or a :class:`~nightjar.storage.CatalogsRoot` (``Settings.catalogs``); the handles carry the root, so
    Dask workers reach the catalogues with nothing else.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> load_catalog_set(Path(tempfile.mkdtemp())).catalogs
    ()
    """
    infos = {i.name: i for i in list_catalogs(home)}
    if names is not None:
        missing = sorted(set(names) - set(infos))
        if missing:
            raise ValueError(f"no such catalogue: {', '.join(missing)}; installed: {', '.join(infos) or 'none'}")
        chosen = names
    else:
        chosen = sorted(infos)
    where = catalogs_root(home)
    handles = tuple(open_handle(layout.collection_dir(where, n), where) for n in chosen)
    return CatalogSet(handles, rules or ContextRules(), cache_bytes=cache_mb << 20)
