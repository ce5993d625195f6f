"""HEALPix indices of alert positions: the order-29 nested index (lake sort key) and a coarse partition index."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pyarrow as pa

from nightjar import paths


def hpx29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 of positions in degrees."""
    return np.asarray(hp.ang2pix(1 << paths.HPX_ORDER_MAX, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def add_healpix(table: pa.Table, partition_order: int) -> pa.Table:
    """Append ``hpx29`` and ``hpx_part`` (the order-``partition_order`` parent) computed from ``ra``/``dec``."""
    if table.num_rows == 0:
        empty = pa.array([], pa.int64())
        return table.append_column(paths.HPX29, empty).append_column(paths.HPX_PART, empty)
    ra = table["ra"].to_numpy(zero_copy_only=False)
    dec = table["dec"].to_numpy(zero_copy_only=False)
    index = hpx29(ra, dec)
    parent = index >> (2 * (paths.HPX_ORDER_MAX - partition_order))
    return table.append_column(paths.HPX29, pa.array(index)).append_column(paths.HPX_PART, pa.array(parent))


def add_night(table: pa.Table, mjd_column: str = "midpointMjdTai") -> pa.Table:
    """Append ``night``: the integer MJD of the observation, the lake's time partition."""
    mjd = table[mjd_column].to_numpy(zero_copy_only=False) if table.num_rows else np.array([])
    return table.append_column(paths.NIGHT, pa.array(np.floor(mjd).astype(np.int32), pa.int32()))
