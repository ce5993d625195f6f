"""The margin cache: for each partition, the rows of other partitions near enough to match an alert inside it.

A row joins the margin of every partition that overlaps the 3×3 block of HEALPix cells around it, at the order
whose cells are wide enough for the row's reach (its largest match radius, at least the margin threshold). Every
row within its reach of a partition is therefore in that partition's margin, and hats' ``hats_margin_threshold``
(the guaranteed distance) holds; rows slightly farther may be included too, which no crossmatch minds.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa

from nightjar.catalogs import healpix, layout
from nightjar.catalogs.write_hats import read_parquet, write_parquet, write_table_file
from nightjar.storage import StorageRoot, filesystem_of


def assign(
    index: np.ndarray, reach: np.ndarray, threshold: float, starts: np.ndarray, ends: np.ndarray, own: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (row, partition position) of the margins each row belongs to, excluding its own partition ``own``.

    Parameters
    ----------
    index
        The rows' ``_healpix_29``.
    reach
        The rows' reach in arcsec.
    threshold
        The guaranteed margin width in arcsec.
    starts, ends
        Sorted ``_healpix_29`` ranges of all partitions.
    own
        Position of the rows' own partition in ``starts``.
    """
    row_order = healpix.search_orders(np.maximum(reach.astype(np.float64), threshold))
    rows_out, dst_out = [], []
    for order in np.unique(row_order):
        rows = np.flatnonzero(row_order == order)
        shift = 2 * (layout.SPATIAL_INDEX_ORDER - int(order))
        block = healpix.block_cells(index[rows] >> shift, int(order))
        valid = block >= 0
        owner = np.repeat(rows, 9)[valid.ravel()]
        cells = block.ravel()[valid.ravel()]
        first, last = healpix.overlapping(cells << shift, (cells + 1) << shift, starts, ends)
        which, partition = healpix.expand_ranges(first, last)
        keep = partition != own
        rows_out.append(owner[which][keep])
        dst_out.append(partition[keep])
    if not rows_out:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(rows_out), np.concatenate(dst_out)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def margin_map(
    partition_path: str,
    own: int,
    starts: np.ndarray,
    ends: np.ndarray,
    threshold: float,
    shard_dir: str,
    root: StorageRoot | None = None,
) -> dict[int, str]:
    """Map step: split the margin rows of one partition by destination; returns {destination: shard path}."""
    fs = filesystem_of(root)
    table = read_parquet(partition_path, fs)
    index = table[layout.SPATIAL_INDEX].to_numpy()
    reach = table[layout.REACH].to_numpy()
    rows, dst = assign(index, reach, threshold, starts, ends, own)
    out: dict[int, str] = {}
    if rows.size == 0:
        return out
    order = np.argsort(dst, kind="stable")
    rows, dst = rows[order], dst[order]
    bounds = np.flatnonzero(np.diff(dst)) + 1
    for chunk_rows, chunk_dst in zip(np.split(rows, bounds), np.split(dst, bounds), strict=True):
        d = int(chunk_dst[0])
        path = PurePosixPath(shard_dir) / f"dst={d}" / f"src={own}.parquet"
        write_parquet(table.take(pa.array(chunk_rows)), path, fs)
        out[d] = str(path)
    return out


def margin_reduce(
    shards: list[str],
    margin_catalog: str,
    order: int,
    pixel: int,
    schema: pa.Schema,
    root: StorageRoot | None = None,
) -> int:
    """Reduce step: one partition's margin rows from every neighbour, written as the margin catalogue's file."""
    fs = filesystem_of(root)
    table = pa.concat_tables([read_parquet(s, fs) for s in shards], promote_options="permissive")
    return write_table_file(table, margin_catalog, order, pixel, schema, root)
