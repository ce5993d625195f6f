"""Running light-curve's feature extractors over many curves at once."""

from __future__ import annotations

import light_curve as lc
import numpy as np


def evaluate(ext: lc.Extractor, curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """``ext``'s features of each curve (time-sorted ``(t, value, error)``), one row each; NaN where undefined.

    One call over all the curves, on this thread: light-curve holds the GIL through ``many`` whatever its
    ``n_jobs``, and slicing the curves so that the worker's other threads get turns in between was no faster
    (docs/lake.md)."""
    if not curves:
        return np.empty((0, len(ext.names)))
    return np.asarray(ext.many(curves, fill_value=np.nan, sorted=True, check=False, n_jobs=1))
