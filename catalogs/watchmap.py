"""Watchmaps: named sky areas as MOCs (mocpy), from a MOC FITS file, a polygon, a circle or the credible region of
a HEALPix probability map, and the test of which alerts lie inside one, with the MOC cached per process."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Latitude, Longitude
from astropy.io import fits
from mocpy import MOC

from nightjar.catalogs import watch_store
from nightjar.catalogs.cache import IndexCache
from nightjar.errors import UserError
from nightjar.storage import CatalogsRoot

MAX_ORDER = 29
DEFAULT_ORDER = 12  # polygons and circles: cells of 52″ at the boundary
KINDS = ("moc", "polygon", "circle", "skymap")


class WatchmapError(UserError):
    """An area that cannot be made: not a MOC, wrong orders, empty, bad geometry."""


@dataclass(frozen=True)
class WatchmapSpec:
    """What a worker needs to match one active watchmap (small and picklable)."""

    id: int
    version: int
    path: str  # its MOC: ``paths.watchmap_key`` within ``root`` (a local path when ``root`` is None)
    owner: str = "local"
    public: bool = True  # private and group areas' hits are their owner's alone
    root: CatalogsRoot | None = field(
        default=None, hash=False
    )  # where the watch files live (``Settings.catalogs``), with its storage options


def _checked(moc: MOC, what: str) -> MOC:
    if moc.empty():
        raise WatchmapError(f"{what}: the area is empty (it covers no HEALPix cell)")
    if not 0 <= moc.max_order <= MAX_ORDER:
        raise WatchmapError(f"{what}: MOC order {moc.max_order} is outside 0..{MAX_ORDER}")
    return moc


def _fits_kind(path: Path) -> str:
    """``moc`` for a MOC FITS file, ``skymap`` for a HEALPix map; a WatchmapError otherwise."""
    try:
        with fits.open(path) as hdus:
            if len(hdus) < 2:
                raise WatchmapError(f"{path}: a FITS file without a table extension is not a MOC")
            header = hdus[1].header
            if "MOCORDER" in header and ("PROBDENSITY" in hdus[1].columns.names or "PROB" in hdus[1].columns.names):
                return "skymap"
            if header.get("PIXTYPE") == "HEALPIX" and header.get("ORDERING") not in ("NUNIQ", "RANGE", "RANGE29"):
                return "skymap"
            if any(k in header for k in ("MOCORDER", "MOCORD_S", "MOCDIM", "MOCVERS")):
                order = header.get("MOCORDER", header.get("MOCORD_S"))
                if order is not None and not 0 <= int(order) <= MAX_ORDER:
                    raise WatchmapError(f"{path}: MOC order {order} is outside 0..{MAX_ORDER}")
                return "moc"
    except OSError:
        raise WatchmapError(f"{path}: not a FITS file (a MOC or a HEALPix probability map)") from None
    raise WatchmapError(f"{path}: not a MOC (no MOCORDER/MOCDIM keyword) nor a HEALPix probability map")


def from_file(path: Path, credible: float = 0.9) -> tuple[MOC, str]:
    """A MOC FITS file (NUNIQ or RANGE), or a HEALPix probability map (multi-order, ``PROBDENSITY``), whose
    ``credible`` region is taken; (the MOC, its kind)."""
    if not path.is_file():
        raise WatchmapError(f"{path}: no such file")
    kind = _fits_kind(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "skymap":
                if not 0 < credible <= 1:
                    raise WatchmapError(f"the credible level must be in (0, 1], not {credible}")
                moc = MOC.from_multiordermap_fits_file(path, cumul_from=0.0, cumul_to=credible)
            else:
                moc = MOC.load(path, format="fits")
    except WatchmapError:
        raise
    except Exception as exc:
        raise WatchmapError(f"{path}: not a readable {kind} ({exc})") from None
    return _checked(moc, str(path)), kind


def from_polygon(vertices: list[tuple[float, float]], order: int = DEFAULT_ORDER) -> MOC:
    """The area inside a polygon of (ra, dec) vertices in degrees."""
    if len(vertices) < 3:
        raise WatchmapError("a polygon needs at least 3 vertices (ra, dec)")
    _check_order(order)
    ra = np.array([v[0] for v in vertices], np.float64)
    dec = np.array([v[1] for v in vertices], np.float64)
    _check_positions(ra, dec)
    try:
        moc = MOC.from_polygon(Longitude(ra * u.deg), Latitude(dec * u.deg), max_depth=order)
    except Exception as exc:
        raise WatchmapError(f"not a valid polygon: {exc}") from None
    return _checked(moc, "polygon")


def from_circle(ra: float, dec: float, radius_arcsec: float, order: int = DEFAULT_ORDER) -> MOC:
    """The area within ``radius_arcsec`` of a position."""
    _check_order(order)
    _check_positions(np.array([ra]), np.array([dec]))
    if not (np.isfinite(radius_arcsec) and 0 < radius_arcsec <= 180 * 3600):
        raise WatchmapError(f"a circle's radius must be > 0 and at most 180 degrees, not {radius_arcsec} arcsec")
    moc = MOC.from_cone(
        lon=Longitude(ra * u.deg), lat=Latitude(dec * u.deg), radius=radius_arcsec * u.arcsec, max_depth=order
    )
    return _checked(moc, "circle")


def _check_order(order: int) -> None:
    if not 0 <= order <= MAX_ORDER:
        raise WatchmapError(f"the MOC order must be in 0..{MAX_ORDER}, not {order}")


def _check_positions(ra: np.ndarray, dec: np.ndarray) -> None:
    if not (np.all(np.isfinite(ra)) and np.all((ra >= 0) & (ra <= 360))):
        raise WatchmapError("RA must be in 0..360 degrees")
    if not (np.all(np.isfinite(dec)) and np.all((dec >= -90) & (dec <= 90))):
        raise WatchmapError("Dec must be in -90..90 degrees")


def save(moc: MOC, path: Path) -> None:
    """Write ``moc`` as a local MOC FITS file (the stored watchmaps go through ``catalogs.watch_store``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    moc.save(path, format="fits", overwrite=True)


@dataclass
class AreaIndex:
    """A watchmap's MOC as sorted, disjoint order-29 index ranges ``[start, end)``."""

    starts: np.ndarray
    ends: np.ndarray

    @property
    def nbytes(self) -> int:
        """The bytes of the ranges, counted against the cache budget."""
        return int(self.starts.nbytes + self.ends.nbytes)

    @classmethod
    def of(cls, moc: MOC) -> AreaIndex:
        """The index of a MOC."""
        ranges = np.asarray(moc.to_depth29_ranges, dtype=np.uint64).reshape(-1, 2)
        return cls(ranges[:, 0].astype(np.int64), ranges[:, 1].astype(np.int64))

    def contains(self, hpx29: np.ndarray) -> np.ndarray:
        """Whether each order-29 index lies in the area."""
        hpx29 = np.asarray(hpx29, np.int64)
        at = np.searchsorted(self.starts, hpx29, side="right") - 1
        return (at >= 0) & (hpx29 < self.ends[np.maximum(at, 0)]) if self.starts.size else np.zeros(hpx29.size, bool)


_CACHE: IndexCache[tuple[str, str, int], AreaIndex] = IndexCache()


def cached_area(spec: WatchmapSpec, budget_bytes: int) -> AreaIndex:
    """This process's index of a watchmap version, read from its file on first use (a WatchStoreError naming the
    file when it cannot be read: the batch fails, and its offsets are not committed)."""
    key = (spec.root.uri if spec.root else "", spec.path, spec.version)
    return _CACHE.get(key, lambda: AreaIndex.of(watch_store.read_moc(spec.root, spec.path)), budget_bytes)
