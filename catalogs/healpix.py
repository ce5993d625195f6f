"""HEALPix helpers shared by the margin builder and the crossmatch kernel.

Both rely on one geometric fact: if the cells of order ``k`` are at least ``2 r`` wide on average, a disc of radius
``r`` around any point lies inside the 3×3 block of cells around the point's own cell. HEALPix cells vary in
shape; a factor 2 between the average size and the radius is safer than the 1.6 hats uses for its margins, and
the crossmatch tests check it against a brute-force search near the poles and cell corners.
"""

from __future__ import annotations

import healpy as hp
import numpy as np

MAX_ORDER = 29
_ARCSEC = np.pi / 180.0 / 3600.0


MAX_RADIUS_ARCSEC = 36_000.0  # 10 degrees: beyond this the 3x3 block of order-1 cells is not enough


def search_order(radius_arcsec: float) -> int:
    """The highest order whose 3×3 cell block around a point contains the disc of ``radius_arcsec``.

    Examples
    --------
    >>> search_order(2.0), search_order(60.0), search_order(3600.0)
    (15, 10, 4)
    """
    if radius_arcsec > MAX_RADIUS_ARCSEC:
        raise ValueError(f"search radius {radius_arcsec}″ is beyond the supported {MAX_RADIUS_ARCSEC:g}″")
    if radius_arcsec <= 0:
        return MAX_ORDER
    avg_needed = 2.0 * radius_arcsec * _ARCSEC
    order = int(np.floor(np.log2(np.sqrt(np.pi / 3.0) / avg_needed)))
    return max(1, min(MAX_ORDER, order))


def search_orders(radius_arcsec: np.ndarray) -> np.ndarray:
    """:func:`search_order` of every radius, vectorised."""
    radius = np.asarray(radius_arcsec, dtype=np.float64)
    if radius.size and radius.max() > MAX_RADIUS_ARCSEC:
        raise ValueError(f"search radius {radius.max()}″ is beyond the supported {MAX_RADIUS_ARCSEC:g}″")
    with np.errstate(divide="ignore"):
        order = np.floor(np.log2(np.sqrt(np.pi / 3.0) / (2.0 * np.maximum(radius, 0.0) * _ARCSEC)))
    return np.clip(np.nan_to_num(order, posinf=MAX_ORDER), 1, MAX_ORDER).astype(np.int64)


def block_cells(cells: np.ndarray, order: int) -> np.ndarray:
    """Each cell and its (up to) 8 neighbours at ``order`` (>= 1), shape (n, 9); missing neighbours are -1."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return np.empty((0, 9), dtype=np.int64)
    neighbours = hp.get_all_neighbours(1 << order, cells, nest=True).astype(np.int64)
    return np.concatenate([cells[:, None], neighbours.reshape(8, -1).T], axis=1)


# For a point in child quadrant q of its cell, the neighbours (healpy's order SW, W, NW, N, NE, E, SE, S) that
# share the quadrant's two outer edges and its corner: quadrant (x, y) = (q & 1, q >> 1) of the nested scheme.
_QUADRANT_NEIGHBOURS = np.array([[0, 6, 7], [4, 6, 5], [0, 2, 1], [4, 2, 3]])


def quadrant_order(radius_arcsec: float) -> int:
    """The highest order at which :func:`quadrant_cells` contain the disc of ``radius_arcsec`` (cells >= 4 r)."""
    return min(search_order(2.0 * radius_arcsec), MAX_ORDER - 1)


def quadrant_cells(index29: np.ndarray, order: int) -> np.ndarray:
    """The cell at ``order`` (>= 1) of each order-29 index, and the 3 neighbours nearest to the point, (n, 4).

    A point in a quarter of its cell can only be near the two edges and the corner of that quarter, so when
    cells are at least 4 r wide on average, the disc of radius r around it lies in these 4 cells (missing
    neighbours are -1): 4 look-ups per point instead of the 9 of a full block.
    """
    index29 = np.asarray(index29, dtype=np.int64)
    if index29.size == 0:
        return np.empty((0, 4), dtype=np.int64)
    cells = index29 >> (2 * (MAX_ORDER - order))
    quadrant = (index29 >> (2 * (MAX_ORDER - order - 1))) & 3
    neighbours = hp.get_all_neighbours(1 << order, cells, nest=True).astype(np.int64).reshape(8, -1)
    chosen = neighbours[_QUADRANT_NEIGHBOURS[quadrant].T, np.arange(cells.size)]
    return np.concatenate([cells[:, None], chosen.T], axis=1)


def overlapping(
    cell_lo: np.ndarray, cell_hi: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For index ranges ``[cell_lo, cell_hi)``, the positions ``[first, last)`` of the overlapping intervals.

    ``starts``/``ends`` are sorted, disjoint ``[start, end)`` intervals (partitions) in the same index space.
    """
    first = np.searchsorted(ends, cell_lo, side="right")
    last = np.searchsorted(starts, cell_hi, side="left")
    return first, np.maximum(first, last)


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ranges ``[lo_i, hi_i)``: (owner i of each element, element value), without a Python loop."""
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    owner = np.repeat(np.arange(lo.size), counts)
    first = np.cumsum(counts) - counts
    values = np.arange(total, dtype=np.int64) - np.repeat(first, counts) + np.repeat(lo, counts)
    return owner, values
