"""Turn a chunk of a source catalogue into rows of the catalogue store: standard columns first, then the source's.

Runs in Dask tasks during import, one chunk at a time; everything is columnar.
"""

from __future__ import annotations

from dataclasses import dataclass

import healpy as hp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.catalogs import layout
from nightjar.catalogs.catalog import ARCSEC_PER_UNIT, ColumnMap
from nightjar.catalogs.rules import ContextRules, Kind, reach

ID_CHUNK_SHIFT = 32  # rows without an id column get (chunk << 32) | row


@dataclass(frozen=True)
class Recipe:
    """How to standardise the chunks of one import."""

    columns: ColumnMap
    kind: Kind
    rules: ContextRules
    radius_arcsec: float | None = None
    label: str = "input"


def spatial_index(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The order-29 nested HEALPix index (``_healpix_29``) of positions in degrees."""
    nside = 1 << layout.SPATIAL_INDEX_ORDER
    return np.asarray(hp.ang2pix(nside, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def _as_table(chunk: pa.Table | pd.DataFrame) -> pa.Table:
    table = chunk if isinstance(chunk, pa.Table) else pa.Table.from_pandas(chunk, preserve_index=False)
    return table.select([n for n in table.column_names if not n.startswith("__")])


def _float(table: pa.Table, column: str, label: str) -> np.ndarray:
    values = table[column]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.utf8_trim_whitespace(values)
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    try:
        out = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{label}: column {column!r} is not numeric ({values.type}): {exc}") from None
    arr = out.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return np.where(np.isfinite(arr), arr, np.nan)


def _strings(table: pa.Table, column: str) -> pa.Array:
    values = pc.cast(table[column], pa.string()).combine_chunks()
    return pc.utf8_trim_whitespace(values)


def check_columns(available: list[str], columns: ColumnMap, label: str) -> None:
    """Raise a clear error when a mapped column is not in the source."""
    missing = [c for c in columns.source_columns() if c not in available]
    if missing:
        raise ValueError(
            f"{label}: no column {', '.join(repr(m) for m in missing)}; the columns are: {', '.join(available)}"
        )


def standardize(chunk: pa.Table | pd.DataFrame, recipe: Recipe, chunk_index: int) -> tuple[pa.Table, int]:
    """Standard columns (see ``layout.STANDARD_COLUMNS``) followed by the source's own columns.

    Rows without a position are dropped (their count is returned); positions outside the sky are an error.

    Parameters
    ----------
    chunk
        Rows of the source catalogue.
    recipe
        Column mapping, kind and rules of the import.
    chunk_index
        The chunk's number, used to give rows without an id column a unique int64 id.

    Returns
    -------
    tuple
        The standardised rows, unsorted, and the number of rows dropped for lacking a position.
    """
    cols = recipe.columns
    table = _as_table(chunk)
    check_columns(table.column_names, cols, recipe.label)
    n_in = table.num_rows
    ids: pa.Array
    if cols.id is None:
        ids = pa.array((np.int64(chunk_index) << ID_CHUNK_SHIFT) + np.arange(n_in, dtype=np.int64))
    elif pa.types.is_integer(table[cols.id].type):
        ids = pc.cast(table[cols.id], pa.int64()).combine_chunks()
    else:
        ids = _strings(table, cols.id)
    table = table.append_column("__nj_id", ids)

    ra = _float(table, cols.ra, recipe.label)
    dec = _float(table, cols.dec, recipe.label)
    keep = np.isfinite(ra) & np.isfinite(dec)
    if cols.keep_types is not None and cols.type is not None:
        types = _strings(table, cols.type)
        keep &= pc.is_in(types, pa.array(cols.keep_types)).to_numpy(zero_copy_only=False)
    bad_ra = keep & ((ra < 0) | (ra > 360))
    bad_dec = keep & ((dec < -90) | (dec > 90))
    if bad_ra.any() or bad_dec.any():
        which, values, bound = (
            (cols.ra, ra[bad_ra], "[0, 360]") if bad_ra.any() else (cols.dec, dec[bad_dec], "[-90, 90]")
        )
        raise ValueError(
            f"{recipe.label}: {int(bad_ra.sum() + bad_dec.sum())} rows have positions outside the sky: "
            f"column {which!r} must be in degrees within {bound}, found {float(values[0])}"
        )
    dropped = int(n_in - keep.sum())
    if dropped:
        table = table.filter(pa.array(keep))
        ra, dec = ra[keep], dec[keep]
    ra = np.mod(ra, 360.0)
    n = table.num_rows

    def optional(column: str | None, scale: float = 1.0) -> np.ndarray:
        return np.full(n, np.nan) if column is None else _float(table, column, recipe.label) * scale

    z = optional(cols.z)
    photo_z = optional(cols.photo_z)
    semi_major = optional(cols.major_axis, ARCSEC_PER_UNIT[cols.major_axis_unit] / 2.0)
    mag = optional(cols.mag)
    distance = optional(cols.distance)
    attrs = {"z": z, "photo_z": photo_z, "semi_major_arcsec": semi_major, "mag": mag, "distance_mpc": distance}
    reach_arcsec = reach(recipe.kind, attrs, n, recipe.rules, recipe.radius_arcsec)
    object_type = _strings(table, cols.type) if cols.type is not None else pa.nulls(n, pa.string())

    def nullable(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~np.isfinite(values))

    standard = {
        layout.SPATIAL_INDEX: pa.array(spatial_index(ra, dec)),
        layout.RA: pa.array(ra),
        layout.DEC: pa.array(dec),
        layout.OBJECT_ID: table["__nj_id"],
        layout.Z: nullable(z),
        layout.PHOTO_Z: nullable(photo_z),
        layout.SEMI_MAJOR: nullable(semi_major),
        layout.MAG: nullable(mag),
        layout.OBJECT_TYPE: object_type,
        layout.DISTANCE: nullable(distance),
        layout.REACH: pa.array(reach_arcsec, pa.float32()),
    }
    out = pa.table(standard)
    for name in table.column_names:
        if name in (cols.ra, cols.dec, "__nj_id"):
            continue
        target = f"{name}_src" if name in standard else name
        out = out.append_column(target, table[name])
    return out, dropped
