"""Watchlists on the workers: a HEALPix index of a list's cones, cached per process, and the batch matcher.

A watchlist's cones (``catalogs.watch_files``) are stored sorted by their order-29 HEALPix index. On a worker the
file becomes a :class:`ConeIndex` once per list version: cones split into tiers by radius (as the context
catalogues' rows are, ``catalogs.index``), each tier sorted by ``hpx29``. A batch's alerts look up, per tier, the
4 cells at the tier's order that can hold a cone reaching them (``healpix.quadrant_cells``), take the cones of
those cells by binary search, and keep those within each cone's radius by exact separation. No per-alert Python:
the loops run over tiers only, so a 10^7-cone list costs a few binary searches per alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.catalogs import healpix, watch_store
from nightjar.catalogs.cache import CacheStats, IndexCache
from nightjar.catalogs.index import TIER_BOUNDS, merge_small_tiers, tier_of
from nightjar.catalogs.standardize import spatial_index
from nightjar.catalogs.watch_files import CONES_SCHEMA
from nightjar.geometry import separation_arcsec
from nightjar.storage import CatalogsRoot

HPX = "hpx29"


@dataclass(frozen=True)
class WatchlistSpec:
    """What a worker needs to match one active watchlist (small and picklable: it travels with each batch)."""

    id: int
    version: int
    path: str  # its cones: ``paths.watchlist_key`` within ``root`` (a local path when ``root`` is None)
    radius_arcsec: float  # the list's default radius
    owner: str = "local"
    public: bool = True  # private and group lists' hits are their owner's alone
    root: CatalogsRoot | None = field(
        default=None, hash=False
    )  # where the watch files live (``Settings.catalogs``), with its storage options


@dataclass
class ConeTier:
    """The cones of a watchlist whose radii fall in one radius band, searched at one order; keys sorted by hpx29."""

    order: int  # the search order of the tier's largest radius
    keys: np.ndarray  # hpx29 of the tier's cones, sorted
    first: int  # position of the tier's first cone in the index's arrays


@dataclass
class ConeIndex:
    """The cones of one watchlist version, ready for matching (arrays in tier order, then hpx29 order)."""

    tiers: list[ConeTier]
    ra: np.ndarray
    dec: np.ndarray
    radius: np.ndarray  # arcsec, the default filled in
    cone_id: np.ndarray
    names: pa.Array

    @property
    def nbytes(self) -> int:
        """The bytes of the index's arrays, counted against the cache budget."""
        arrays = (self.ra, self.dec, self.radius, self.cone_id)
        return int(sum(a.nbytes for a in arrays) + sum(t.keys.nbytes for t in self.tiers) + self.names.nbytes)

    def __len__(self) -> int:
        return int(self.ra.size)


def sorted_cones(cones: pa.Table) -> pa.Table:
    """The cones as stored: with their ``hpx29`` index, sorted by it."""
    ra = cones["ra"].to_numpy(zero_copy_only=False)
    dec = cones["dec"].to_numpy(zero_copy_only=False)
    table = cones.select(CONES_SCHEMA.names).cast(CONES_SCHEMA).append_column(HPX, pa.array(spatial_index(ra, dec)))
    return table.sort_by(HPX)


def build_index(cones: pa.Table, default_radius: float) -> ConeIndex:
    """A :class:`ConeIndex` of a cone table (``CONES_SCHEMA``, any order)."""
    if HPX not in cones.column_names:
        cones = sorted_cones(cones)
    radius = pc.fill_null(cones["radius"], float(default_radius)).to_numpy(zero_copy_only=False).astype(np.float64)
    keys = cones[HPX].to_numpy(zero_copy_only=False).astype(np.int64)
    tier = merge_small_tiers(tier_of(radius))
    # Rows by tier, and by hpx29 within a tier (the file is sorted by hpx29: a stable sort keeps that order).
    order = np.argsort(tier, kind="stable")
    tier, keys, radius = tier[order], keys[order], radius[order]
    tiers = []
    for t in np.unique(tier):
        start, stop = (int(x) for x in np.searchsorted(tier, [t, t + 1]))
        tiers.append(ConeTier(healpix.quadrant_order(float(TIER_BOUNDS[t])), keys[start:stop], start))
    taken = pa.array(order)

    def column(name: str) -> np.ndarray:
        return cones[name].take(taken).to_numpy(zero_copy_only=False)

    names = cones["name"].take(taken).combine_chunks()
    return ConeIndex(tiers, column("ra"), column("dec"), radius, column("coneId").astype(np.int64), names)


def load_index(spec: WatchlistSpec) -> ConeIndex:
    """The :class:`ConeIndex` of a stored watchlist file (a WatchStoreError naming it when it cannot be read: the
    batch fails, and its offsets are not committed)."""
    return build_index(watch_store.read_parquet(spec.root, spec.path), spec.radius_arcsec)


_CACHE: IndexCache[tuple[str, str, int, float], ConeIndex] = IndexCache()


def cached_index(spec: WatchlistSpec, budget_bytes: int) -> ConeIndex:
    """This process's index of a watchlist version, built from its file on first use."""
    key = (spec.root.uri if spec.root else "", spec.path, spec.version, float(spec.radius_arcsec))
    return _CACHE.get(key, lambda: load_index(spec), budget_bytes)


def clear_cache() -> None:
    """Empty this process's cone indexes."""
    _CACHE.clear()


def cache_stats() -> CacheStats:
    """This process's cone-index cache counters (on the workers: ``client.run(cache_stats)``)."""
    return _CACHE.stats()


@dataclass
class ConeMatches:
    """(alert, cone) pairs: alert positions in the batch, cone positions in the index, separations."""

    alert: np.ndarray
    cone: np.ndarray
    separation: np.ndarray


def match(index: ConeIndex, ra: np.ndarray, dec: np.ndarray, hpx: np.ndarray | None = None) -> ConeMatches:
    """Every (alert, cone) pair with the alert within the cone's radius.

    Parameters
    ----------
    index
        The watchlist's cones.
    ra, dec
        Alert positions in degrees.
    hpx
        Their order-29 indices, when already known.
    """
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    empty = ConeMatches(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    if ra.size == 0 or len(index) == 0:
        return empty
    hpx = spatial_index(ra, dec) if hpx is None else np.asarray(hpx, np.int64)
    owner = np.repeat(np.arange(ra.size, dtype=np.int64), 4)
    lows, highs, owners = [], [], []
    cells_at: dict[int, np.ndarray] = {}
    for tier in index.tiers:
        if tier.order not in cells_at:
            cells_at[tier.order] = healpix.quadrant_cells(hpx, tier.order).ravel()
        flat = cells_at[tier.order]
        valid = flat >= 0
        cell = flat[valid]
        shift = 2 * (healpix.MAX_ORDER - tier.order)
        lows.append(np.searchsorted(tier.keys, cell << shift) + tier.first)
        highs.append(np.searchsorted(tier.keys, (cell + 1) << shift) + tier.first)
        owners.append(owner[valid])
    which, cone = healpix.expand_ranges(np.concatenate(lows), np.concatenate(highs))
    if cone.size == 0:
        return empty
    alert = np.concatenate(owners)[which]
    sep = separation_arcsec(ra[alert], dec[alert], index.ra[cone], index.dec[cone])
    keep = sep <= index.radius[cone]
    alert, cone, sep = alert[keep], cone[keep], sep[keep]
    if alert.size:
        # A cell can be its own neighbour's neighbour near the 8 polar and equatorial corners: count a pair once.
        pair = alert * np.int64(len(index)) + cone
        _, first = np.unique(pair, return_index=True)
        if first.size != pair.size:
            first.sort()
            alert, cone, sep = alert[first], cone[first], sep[first]
    return ConeMatches(alert, cone, sep)
