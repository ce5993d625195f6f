"""Sky regions as ranges of the order-29 HEALPix index, and as pyarrow filters that prune sorted files."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds

from nightjar import paths


def pixel_ranges(hpx29: np.ndarray, order: int) -> np.ndarray:
    """The [lo, hi) order-29 ranges of the order-``order`` pixels holding ``hpx29``, adjacent ones merged."""
    if hpx29.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    shift = 2 * (paths.HPX_ORDER_MAX - order)
    pixels = np.unique(hpx29 >> shift)
    breaks = np.flatnonzero(np.diff(pixels) != 1)
    starts = np.concatenate([[pixels[0]], pixels[breaks + 1]])
    ends = np.concatenate([pixels[breaks], [pixels[-1]]]) + 1
    return np.stack([starts << shift, ends << shift], axis=1).astype(np.int64)


MAX_RANGES = 16  # more terms than this cost more to evaluate than they save in pruning


def ranges_filter(ranges: np.ndarray, column: str = paths.HPX29) -> ds.Expression | None:
    """A filter keeping rows whose ``column`` lies in any of the ranges (None: no range).

    A batch from one visit covers a few ranges, which prune files and row groups well; a batch scattered over
    the sky gets its bounding range instead (a long OR of ranges is slower to evaluate than the rows it saves).
    """
    if len(ranges) > MAX_RANGES:
        ranges = np.array([[ranges[0, 0], ranges[-1, 1]]], dtype=np.int64)
    expression: ds.Expression | None = None
    field = ds.field(column)
    for lo, hi in ranges.tolist():
        term = (field >= lo) & (field < hi)
        expression = term if expression is None else expression | term
    return expression
