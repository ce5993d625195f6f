"""Read the lake: one consistent set of Arrow datasets over the Delta tables, for DuckDB, Dask or pyarrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake.region import pixel_ranges, ranges_filter

DETECTION_COLUMNS = ["diaObjectId", "midpointMjdTai", "band", "psfFlux", "psfFluxErr", "reliability"]


def existing_tables(home: Path) -> list[str]:
    """The lake tables that have at least one commit."""
    return [t for t in paths.TABLES if DeltaTable.is_deltatable(str(paths.table_dir(home, t)))]


def datasets(home: Path) -> dict[str, ds.Dataset]:
    """Each existing lake table as a pyarrow dataset at its latest version."""
    return {t: DeltaTable(str(paths.table_dir(home, t))).to_pyarrow_dataset() for t in existing_tables(home)}


def table_versions(home: Path) -> dict[str, int]:
    return {t: DeltaTable(str(paths.table_dir(home, t))).version() for t in existing_tables(home)}


def detections_of(home: Path, object_ids: np.ndarray, hpx29: np.ndarray, region_order: int = 5) -> pa.Table:
    """Every detection in the lake of the given objects (``hpx29``: their positions, to prune the read)."""
    location = paths.table_dir(home, paths.SOURCES)
    if len(object_ids) == 0 or not DeltaTable.is_deltatable(str(location)):
        return pa.table({c: pa.array([], t) for c, t in zip(DETECTION_COLUMNS, _DETECTION_TYPES, strict=True)})
    where = ds.field("diaObjectId").isin(pa.array(np.unique(object_ids), pa.int64()))
    region = ranges_filter(pixel_ranges(hpx29, region_order))
    if region is not None:
        where = region & where
    return DeltaTable(str(location)).to_pyarrow_dataset().to_table(columns=DETECTION_COLUMNS, filter=where)


_DETECTION_TYPES = [pa.int64(), pa.float64(), pa.string(), pa.float32(), pa.float32(), pa.float32()]
