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

from dataclasses import dataclass

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.catalogs import healpix, layout
from nightjar.catalogs.cache import CACHE
from nightjar.catalogs.catalog import CatalogHandle, CatalogSet
from nightjar.catalogs.geometry import separation_arcsec
from nightjar.catalogs.index import TIER_BOUNDS, PartitionIndex, build_index
from nightjar.catalogs.standardize import spatial_index

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


@dataclass
class Found:
    """Matches in one partition: alert positions (local to the call), attribute rows and geometry."""

    alert: np.ndarray
    row: np.ndarray
    separation: np.ndarray
    ra: np.ndarray
    dec: np.ndarray


def search(
    index: PartitionIndex, hpx: np.ndarray, ra: np.ndarray, dec: np.ndarray, with_margin: bool = True
) -> Found:
    """Rows of one partition index (and its margin) within their reach of each alert."""
    alerts, rows, cells29 = [], [], []
    n = hpx.size
    for tier in index.tiers:
        level = tier.order if tier.directory is None else min(tier.order, tier.directory_order)
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - level)
        block = healpix.block_cells(hpx >> shift, level).ravel()
        owner = np.repeat(np.arange(n), 9)
        valid = block >= 0
        if level >= index.order:
            rel = 2 * (level - index.order)
            inside = valid & ((block >> rel) == index.pixel)
        else:
            inside = valid
        found_alerts, found_rows, found_cells = [], [], []
        if tier.index.size:
            if tier.directory is not None and level >= index.order:
                step = 2 * (tier.directory_order - level)
                cell = (block[inside] - (index.pixel << rel)) << step
                lo = tier.directory[cell].astype(np.int64)
                hi = tier.directory[cell + (1 << step)].astype(np.int64)
            else:
                cell = block[inside]
                lo = np.searchsorted(tier.index, cell << shift)
                hi = np.searchsorted(tier.index, (cell + 1) << shift)
            which, pos = healpix.expand_ranges(lo, hi)
            found_alerts.append(owner[inside][which])
            found_rows.append(tier.first + pos)
            found_cells.append(tier.index[pos])
        if with_margin and tier.margin_index.size:
            outside = valid & ~inside if level >= index.order else valid
            cell = block[outside]
            lo = np.searchsorted(tier.margin_index, cell << shift)
            hi = np.searchsorted(tier.margin_index, (cell + 1) << shift)
            which, pos = healpix.expand_ranges(lo, hi)
            found_alerts.append(owner[outside][which])
            found_rows.append(tier.margin_first + pos)
            found_cells.append(tier.margin_index[pos])
        if not found_alerts:
            continue
        cand_alert = np.concatenate(found_alerts)
        cand_row = np.concatenate(found_rows)
        cand_hpx = np.concatenate(found_cells)
        if level < tier.order and cand_alert.size:
            # The directory's cells are coarser than the tier needs: keep candidates in the fine 3x3 block.
            fine = 2 * (layout.SPATIAL_INDEX_ORDER - tier.order)
            fine_block = healpix.block_cells(hpx >> fine, tier.order)
            near = (fine_block[cand_alert] == (cand_hpx >> fine)[:, None]).any(axis=1)
            cand_alert, cand_row, cand_hpx = cand_alert[near], cand_row[near], cand_hpx[near]
        alerts.append(cand_alert)
        rows.append(cand_row)
        cells29.append(cand_hpx)
    if not alerts:
        empty = np.empty(0)
        return Found(empty.astype(np.int64), empty.astype(np.int64), empty, empty, empty)
    alert = np.concatenate(alerts)
    row = np.concatenate(rows)
    cra, cdec = hp.pix2ang(NSIDE29, np.concatenate(cells29), nest=True, lonlat=True)
    sep = separation_arcsec(ra[alert], dec[alert], cra, cdec)
    keep = sep <= index.reach[row]
    return Found(alert[keep], row[keep], sep[keep], cra[keep], cdec[keep])


def partition_index(handle: CatalogHandle, order: int, pixel: int, budget_bytes: int) -> PartitionIndex:
    """The index of one partition, from this process's cache or built from the files."""
    key = (str(handle.collection), handle.version, order, pixel)

    def build() -> PartitionIndex:
        margin = layout.partition_file(handle.margin, order, pixel) if handle.margin is not None else None
        return build_index(layout.partition_file(handle.primary, order, pixel), margin, order, pixel)

    return CACHE.get(key, build, budget_bytes)


def _column(table: pa.Table, name: str, rows: np.ndarray, dtype: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(rows.size, dtype)
    col = table[name].take(pa.array(rows))
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return pc.cast(col, dtype).combine_chunks()


def _rows(index: PartitionIndex, found: Found, object_index: np.ndarray, catalog: int) -> pa.Table:
    attrs = index.attributes
    columns = {
        "object_index": pa.array(object_index[found.alert], pa.int64()),
        "catalog_index": pa.array(np.full(found.alert.size, catalog, dtype=np.int32)),
        "separation_arcsec": pa.array(found.separation),
        "catalog_ra": pa.array(found.ra),
        "catalog_dec": pa.array(found.dec),
    }
    for name in (layout.OBJECT_ID, layout.Z, layout.PHOTO_Z, layout.SEMI_MAJOR, layout.MAG):
        columns[name] = _column(attrs, name, found.row, MATCH_SCHEMA.field(name).type)
    columns[layout.OBJECT_TYPE] = _column(attrs, layout.OBJECT_TYPE, found.row, pa.string())
    columns[layout.DISTANCE] = _column(attrs, layout.DISTANCE, found.row, pa.float64())
    columns["reach_arcsec"] = pa.array(index.reach[found.row].astype(np.float64))
    return pa.table(columns, schema=MATCH_SCHEMA)


def crossmatch_catalog(
    handle: CatalogHandle, catalog: int, hpx: np.ndarray, ra: np.ndarray, dec: np.ndarray, budget_bytes: int
) -> list[pa.Table]:
    """Matches of the alerts against one catalogue, as tables in ``MATCH_SCHEMA``."""
    starts, ends, order_of = handle.intervals()
    orders = np.asarray(handle.orders)[order_of]
    pixels = np.asarray(handle.pixels)[order_of]
    position = np.searchsorted(starts, hpx, side="right") - 1
    inside = (position >= 0) & (hpx < ends[np.maximum(position, 0)])
    out: list[pa.Table] = []
    members = np.flatnonzero(inside)
    by_partition = members[np.argsort(position[members], kind="stable")]
    cuts = np.flatnonzero(np.diff(position[by_partition])) + 1
    for group in np.split(by_partition, cuts) if by_partition.size else []:
        p = int(position[group[0]])
        index = partition_index(handle, int(orders[p]), int(pixels[p]), budget_bytes)
        found = search(index, hpx[group], ra[group], dec[group], with_margin=True)
        if found.alert.size:
            out.append(_rows(index, found, group, catalog))
    # Alerts outside every partition: search the partitions their cell block overlaps (no margins needed).
    lonely = np.flatnonzero(~inside)
    if lonely.size and starts.size:
        bound = TIER_BOUNDS[min(int(np.searchsorted(TIER_BOUNDS, handle.max_reach_arcsec)), TIER_BOUNDS.size - 1)]
        level = healpix.search_order(float(bound))
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - level)
        block = healpix.block_cells(hpx[lonely] >> shift, level)
        owner = np.repeat(lonely, 9)[block.ravel() >= 0]
        cells = block.ravel()[block.ravel() >= 0]
        first, last = healpix.overlapping(cells << shift, (cells + 1) << shift, starts, ends)
        which, part = healpix.expand_ranges(first, last)
        pairs = np.unique(np.stack([part, owner[which]], axis=1), axis=0)
        cuts = np.flatnonzero(np.diff(pairs[:, 0])) + 1
        for chunk in np.split(pairs, cuts) if pairs.size else []:
            p = int(chunk[0, 0])
            group = chunk[:, 1]
            index = partition_index(handle, int(orders[p]), int(pixels[p]), budget_bytes)
            found = search(index, hpx[group], ra[group], dec[group], with_margin=False)
            if found.alert.size:
                out.append(_rows(index, found, group, catalog))
    return out


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

