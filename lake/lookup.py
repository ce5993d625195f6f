"""Point reads of the lake: the cutouts of one alert by diaSourceId, and cone searches by position.

Cutout files are sorted by diaSourceId in row groups of a few dozen alerts, so a lookup opens one file and
reads one row group, chosen from the Delta log's per-file statistics and the Parquet row-group statistics.
Source files are sorted by the order-29 HEALPix index, so a cone search reads the row groups whose index range
meets the cone's pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake.region import ranges_filter

CUTOUT_COLUMNS = ["diaSourceId", "cutoutDifference", "cutoutScience", "cutoutTemplate"]


class CutoutStore:
    """Cutouts by diaSourceId, for one version of the cutouts table (make a new store to see new alerts)."""

    def __init__(self, home: Path) -> None:
        dt = DeltaTable(str(paths.table_dir(home, paths.CUTOUTS)))
        actions = pa.table(dt.get_add_actions(flatten=True)).to_pydict()
        root = Path(str(paths.table_dir(home, paths.CUTOUTS)))
        self._files = [str(root / p) for p in actions["path"]]
        self._lo = np.asarray(actions["min.diaSourceId"], dtype=np.int64)
        self._hi = np.asarray(actions["max.diaSourceId"], dtype=np.int64)
        self._open = functools.lru_cache(maxsize=256)(pq.ParquetFile)

    def get(self, dia_source_id: int) -> dict[str, bytes | None] | None:
        """The three cutouts of an alert, or None if the lake has no such diaSourceId."""
        for index in np.flatnonzero((self._lo <= dia_source_id) & (self._hi >= dia_source_id)):
            parquet = self._open(self._files[index])
            meta = parquet.metadata
            column = parquet.schema_arrow.get_field_index("diaSourceId")
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(column).statistics
                if stats is not None and stats.has_min_max and not stats.min <= dia_source_id <= stats.max:
                    continue
                rows = parquet.read_row_group(group, columns=CUTOUT_COLUMNS)
                found = rows.filter(pc.equal(rows["diaSourceId"], dia_source_id))
                if found.num_rows:
                    return {k: v for k, v in found.to_pylist()[0].items() if k != "diaSourceId"}
        return None


def cone_order(radius_arcsec: float) -> int:
    """The HEALPix order whose pixels are about the cone's size (few pixels, little excess area)."""
    order = int(np.clip(np.floor(np.log2(np.degrees(np.sqrt(np.pi / 3)) * 3600 / max(radius_arcsec, 1e-3))), 0, 20))
    return order


def cone_ranges(ra: float, dec: float, radius_arcsec: float) -> np.ndarray:
    """Order-29 index ranges covering a cone."""
    order = cone_order(radius_arcsec)
    vec = hp.ang2vec(ra, dec, lonlat=True)
    pixels = np.sort(hp.query_disc(1 << order, vec, np.radians(radius_arcsec / 3600), inclusive=True, nest=True))
    shift = 2 * (paths.HPX_ORDER_MAX - order)
    breaks = np.flatnonzero(np.diff(pixels) != 1)
    starts = np.concatenate([[pixels[0]], pixels[breaks + 1]])
    ends = np.concatenate([pixels[breaks], [pixels[-1]]]) + 1
    return np.stack([starts << shift, ends << shift], axis=1).astype(np.int64)


def angular_separation_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: float, dec2: float) -> np.ndarray:
    """Great-circle distances (haversine, accurate at small angles)."""
    r1, d1, r2, d2 = np.radians(ra1), np.radians(dec1), np.radians(ra2), np.radians(dec2)
    a = np.sin((d1 - d2) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r1 - r2) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))) * 3600


def cone(
    home: Path,
    ra: float,
    dec: float,
    radius_arcsec: float,
    table: str = paths.SOURCES,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of ``table`` within ``radius_arcsec`` of (ra, dec), with their separation ``sep_arcsec``."""
    dataset = DeltaTable(str(paths.table_dir(home, table))).to_pyarrow_dataset()
    wanted = None if columns is None else list(dict.fromkeys([*columns, "ra", "dec"]))
    rows = dataset.to_table(columns=wanted, filter=ranges_filter(cone_ranges(ra, dec, radius_arcsec)))
    if rows.num_rows == 0:
        return rows.append_column("sep_arcsec", pa.array([], pa.float64()))
    sep = angular_separation_arcsec(rows["ra"].to_numpy(), rows["dec"].to_numpy(), ra, dec)
    inside = sep <= radius_arcsec
    return rows.filter(pa.array(inside)).append_column("sep_arcsec", pa.array(sep[inside]))
