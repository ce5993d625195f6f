"""HEALPix indices of alert positions: the order-29 nested index (lake sort key) and a coarse partition index."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake.partitions import month_of


def hpx29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 of positions in degrees."""
    return np.asarray(hp.ang2pix(1 << paths.HPX_ORDER_MAX, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def add_healpix(table: pa.Table, partition_order: int) -> pa.Table:
    """Append ``hpx29`` and ``hpx_part`` (the order-``partition_order`` parent) computed from ``ra``/``dec``."""
    if table.num_rows == 0:
        empty = pa.array([], pa.int64())
        return table.append_column(paths.HPX29, empty).append_column(paths.HPX_PART, empty)
    ra = np.asarray(pc.fill_null(table["ra"], np.nan).to_numpy(zero_copy_only=False), np.float64)
    dec = np.asarray(pc.fill_null(table["dec"], np.nan).to_numpy(zero_copy_only=False), np.float64)
    placed = np.isfinite(ra) & np.isfinite(dec)  # rows without a position (ZTF upper limits) get no index
    index = np.zeros(len(ra), np.int64)
    index[placed] = hpx29(ra[placed], dec[placed])
    parent = index >> (2 * (paths.HPX_ORDER_MAX - partition_order))
    missing = ~placed
    return table.append_column(paths.HPX29, pa.array(index, mask=missing)).append_column(
        paths.HPX_PART, pa.array(parent, mask=missing)
    )


def add_night(table: pa.Table, mjd_column: str = "midpointMjdTai") -> pa.Table:
    """Append ``night`` (the integer MJD of the observation) and ``month`` (its "YYYY-MM", the time partition).

    >>> add_night(pa.table({"midpointMjdTai": [60940.2, 60979.9]})).to_pydict()
    {'midpointMjdTai': [60940.2, 60979.9], 'night': [60940, 60979], 'month': ['2025-09', '2025-10']}
    """
    mjd = table[mjd_column].to_numpy(zero_copy_only=False) if table.num_rows else np.array([])
    night = np.floor(mjd).astype(np.int32)
    return table.append_column(paths.NIGHT, pa.array(night, pa.int32())).append_column(paths.MONTH, month_of(night))
