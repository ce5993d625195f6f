"""The crossmatch kernel: every catalogue row within its reach of each alert, for a whole batch at once.

For each catalogue, the batch's alerts are grouped by the partition that holds them; only those partitions (and
their margins) are loaded, through the process's index cache. Within a partition, each reach tier is searched
in the 3×3 block of cells around each alert, at the tier's order: candidate rows come from the dense directory
(or binary search), their positions are decoded from ``_healpix_29``, and the exact angular separation keeps
the true matches. Alerts that fall where the catalogue has no partition search the primary rows of every
partition their cell block overlaps. There is no per-alert Python: loops run over catalogues, partitions and
tiers only.
"""

from __future__ import annotations

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.catalogs import healpix, layout
from nightjar.catalogs.cache import CACHE
from nightjar.catalogs.catalog import CatalogHandle, CatalogSet, read_info
from nightjar.catalogs.index import TIER_BOUNDS, PartitionIndex, build_index
from nightjar.catalogs.standardize import spatial_index
from nightjar.geometry import separation_arcsec

NSIDE29 = 1 << layout.SPATIAL_INDEX_ORDER

MATCH_SCHEMA = pa.schema(
    [
        ("object_index", pa.int64()),
        ("catalog_index", pa.int32()),
        ("separation_arcsec", pa.float64()),
        ("catalog_ra", pa.float64()),
        ("catalog_dec", pa.float64()),
        (layout.OBJECT_ID, pa.string()),
        (layout.Z, pa.float64()),
        (layout.PHOTO_Z, pa.float64()),
        (layout.SEMI_MAJOR, pa.float64()),
        (layout.MAG, pa.float64()),
        (layout.OBJECT_TYPE, pa.string()),
        (layout.DISTANCE, pa.float64()),
        ("reach_arcsec", pa.float64()),
    ]
)


class BatchCells:
    """The quadrant cells of a batch's alerts at each search order, computed once per batch and order."""

    def __init__(self, hpx: np.ndarray) -> None:
        self.hpx = hpx
        self._cells: dict[int, np.ndarray] = {}

    def at(self, order: int) -> np.ndarray:
        """The quadrant cells of the batch's alerts at ``order``."""
        if order not in self._cells:
            self._cells[order] = healpix.quadrant_cells(self.hpx, order)
        return self._cells[order]


def candidates(
    index: PartitionIndex, alerts: np.ndarray, cells: BatchCells, with_margin: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(alert, row) pairs whose row lies in one of the alert's quadrant cells, for every tier of a partition.

    ``alerts`` are positions in the batch; rows are positions in the partition's ``keys`` and attributes.
    """
    lows, highs, owners = [], [], []
    owner = np.repeat(alerts, 4)
    masks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for tier in index.tiers:
        level = tier.order
        if level not in masks:
            flat = cells.at(level)[alerts].ravel()
            valid = flat >= 0
            rel = 2 * (level - index.order)
            # Cells of this partition hold primary rows only; cells beyond it, margin rows only.
            inside = valid & ((flat >> rel) == index.pixel) if rel >= 0 else valid
            outside = valid & ~inside if rel >= 0 else valid
            masks[level] = (flat, inside, outside)
        flat, inside, outside = masks[level]
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - level)
        searches = [(tier.index, tier.first, inside)]
        if with_margin and tier.margin_index.size:
            searches.append((tier.margin_index, tier.margin_first, outside))
        for keys, first, mask in searches:
            if keys.size == 0 or not mask.any():
                continue
            cell = flat[mask]
            lows.append(np.searchsorted(keys, cell << shift) + first)
            highs.append(np.searchsorted(keys, (cell + 1) << shift) + first)
            owners.append(owner[mask])
    if not lows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    which, rows = healpix.expand_ranges(np.concatenate(lows), np.concatenate(highs))
    return np.concatenate(owners)[which], rows


def partition_index(handle: CatalogHandle, order: int, pixel: int, budget_bytes: int) -> PartitionIndex:
    """The index of one partition, from this process's cache or built from the files."""
    where = handle.root.uri if handle.root is not None else ""
    key = (f"{where}|{handle.collection}", handle.version, order, pixel)

    def build() -> PartitionIndex:
        fs = handle.filesystem()
        # A catalogue re-imported since the handle was made: its files are another version's (on object storage
        # they are replaced in place), so an index built from them would be cached under the old version.
        stored = read_info(handle.collection, fs).version
        if stored != handle.version:
            raise RuntimeError(
                f"catalogue {handle.name} was re-imported (version {stored}) since this run loaded version "
                f"{handle.version}: start the run again to use it"
            )
        margin = layout.partition_file(handle.margin, order, pixel) if handle.margin is not None else None
        primary = layout.partition_file(handle.primary, order, pixel)
        return build_index(primary, margin, order, pixel, fs)

    return CACHE.get(key, build, budget_bytes)


def round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (NaN and 0 unchanged).

    Examples
    --------
    >>> round_significant(np.array([np.float32(4.29)], dtype=np.float64), 7).tolist()
    [4.29]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.where(values != 0, np.floor(np.log10(np.abs(values))), 0.0)
    scale = 10.0 ** (digits - 1 - np.nan_to_num(magnitude))
    return np.where(np.isfinite(values), np.round(values * scale) / scale, values)


def _column(table: pa.Table, name: str, dtype: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, dtype)
    chunks = table[name]
    if pa.types.is_dictionary(chunks.type):
        # Partitions have their own dictionaries: decode chunk by chunk before joining them.
        chunks = pc.cast(chunks, chunks.type.value_type)
    col = chunks.combine_chunks()
    if pa.types.is_float32(col.type) and pa.types.is_float64(dtype):
        # Cached as float32 to save memory: widen to the 7 significant digits float32 holds (4.29, not 4.28999996).
        values = col.to_numpy(zero_copy_only=False).astype(np.float64)
        return pa.array(round_significant(values, 7), pa.float64(), mask=np.isnan(values))
    return pc.cast(col, dtype)


def _rows(
    picked: list[tuple[PartitionIndex, np.ndarray]],
    alert: np.ndarray,
    sep: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    catalog: int,
) -> pa.Table:
    """The match table of the kept (partition, rows) pairs, whose alerts and positions are given in order.

    Attributes are gathered partition by partition but converted once for the whole batch: a scattered batch
    touches a hundred partitions, and per-partition conversions cost more than the search."""
    attrs = pa.concat_tables(
        [index.attributes.take(pa.array(row)) for index, row in picked], promote_options="permissive"
    )
    columns = {
        "object_index": pa.array(alert, pa.int64()),
        "catalog_index": pa.array(np.full(alert.size, catalog, dtype=np.int32)),
        "separation_arcsec": pa.array(sep),
        "catalog_ra": pa.array(ra),
        "catalog_dec": pa.array(dec),
    }
    for name in (layout.OBJECT_ID, layout.Z, layout.PHOTO_Z, layout.SEMI_MAJOR, layout.MAG, layout.OBJECT_TYPE):
        columns[name] = _column(attrs, name, MATCH_SCHEMA.field(name).type)
    columns[layout.DISTANCE] = _column(attrs, layout.DISTANCE, pa.float64())
    reach = np.concatenate([index.reach[row] for index, row in picked]).astype(np.float64)
    columns["reach_arcsec"] = pa.array(reach)
    return pa.table(columns, schema=MATCH_SCHEMA)


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Positions of equal values of ``keys``, one array per value (in value order)."""
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    return np.split(order, cuts) if order.size else []


def crossmatch_catalog(
    handle: CatalogHandle, catalog: int, hpx: np.ndarray, ra: np.ndarray, dec: np.ndarray, budget_bytes: int
) -> list[pa.Table]:
    """Matches of the alerts against one catalogue, as tables in ``MATCH_SCHEMA``."""
    starts, ends, order_of = handle.intervals()
    orders = np.asarray(handle.orders)[order_of]
    pixels = np.asarray(handle.pixels)[order_of]
    if starts.size == 0:
        return []
    position = np.searchsorted(starts, hpx, side="right") - 1
    inside = (position >= 0) & (hpx < ends[np.maximum(position, 0)])
    # (partition, alerts, search its margin too): alerts inside a partition search it and its margin; alerts
    # where the catalogue has no partition search every partition their cell block overlaps, primaries only.
    work: list[tuple[int, np.ndarray, bool]] = []
    members = np.flatnonzero(inside)
    work.extend((int(position[g[0]]), g, True) for g in (members[x] for x in _groups(position[members])))
    lonely = np.flatnonzero(~inside)
    if lonely.size:
        bound = TIER_BOUNDS[min(int(np.searchsorted(TIER_BOUNDS, handle.max_reach_arcsec)), TIER_BOUNDS.size - 1)]
        level = healpix.search_order(float(bound))
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - level)
        block = healpix.block_cells(hpx[lonely] >> shift, level).ravel()
        owner = np.repeat(lonely, 9)[block >= 0]
        cells = block[block >= 0]
        first, last = healpix.overlapping(cells << shift, (cells + 1) << shift, starts, ends)
        which, part = healpix.expand_ranges(first, last)
        pairs = np.unique(np.stack([part, owner[which]], axis=1), axis=0)
        work.extend((int(pairs[g[0], 0]), pairs[g, 1], False) for g in _groups(pairs[:, 0]))
    cells_cache = BatchCells(hpx)
    found: list[tuple[PartitionIndex, np.ndarray, np.ndarray]] = []
    for p, alerts, with_margin in work:
        index = partition_index(handle, int(orders[p]), int(pixels[p]), budget_bytes)
        alert, row = candidates(index, alerts, cells_cache, with_margin)
        if alert.size:
            found.append((index, alert, row))
    if not found:
        return []
    # Exact separations for all candidates at once; positions decoded from _healpix_29.
    alert = np.concatenate([f[1] for f in found])
    keys = np.concatenate([f[0].keys[f[2]] for f in found])
    reach = np.concatenate([f[0].reach[f[2]] for f in found])
    cra, cdec = hp.pix2ang(NSIDE29, keys, nest=True, lonlat=True)
    sep = separation_arcsec(ra[alert], dec[alert], cra, cdec)
    keep = sep <= reach
    picked = []
    offset = 0
    for index, part_alert, part_row in found:
        k = keep[offset : offset + part_alert.size]
        offset += part_alert.size
        if k.any():
            picked.append((index, part_row[k]))
    if not picked:
        return []
    return [_rows(picked, alert[keep], sep[keep], cra[keep], cdec[keep], catalog)]


def crossmatch(ra: np.ndarray, dec: np.ndarray, catalogs: CatalogSet) -> pa.Table:
    """Every (alert, catalogue row) pair within the row's reach, in ``MATCH_SCHEMA``.

    Parameters
    ----------
    ra, dec
        Alert positions in degrees; ``object_index`` in the result is the position in these arrays.
    catalogs
        The catalogues to search and the cache budget.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.size == 0:
        return MATCH_SCHEMA.empty_table()
    hpx = spatial_index(ra, dec)
    tables: list[pa.Table] = []
    for i, handle in enumerate(catalogs.catalogs):
        tables.extend(crossmatch_catalog(handle, i, hpx, ra, dec, catalogs.cache_bytes))
    return pa.concat_tables(tables) if tables else MATCH_SCHEMA.empty_table()
