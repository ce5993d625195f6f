"""What a decoded alert must hold to enter the lake, beyond what its schema says: valid UTF-8 in every string,
a finite observation time, numeric fluxes. An alert that fails goes to the dead-letter topic with the reason.

Strings are validated in bulk (Arrow's full validation); only a column that fails is looked at row by row, to
name the alerts. One bad string left in the lake would make ``SELECT *`` fail for everyone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIME_COLUMN = "midpointMjdTai"
FLUX_COLUMNS = ("psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr")
MJD_RANGE = (0.0, 200_000.0)  # 1858 to 2406: anything outside is not an observation time


def invalid_utf8(tables: Mapping[str, pa.Table], row: str) -> dict[int, str]:
    """Messages (by the ``row`` column) with a string that is not valid UTF-8, and where."""
    bad: dict[int, str] = {}
    for name, table in tables.items():
        for index, field in enumerate(table.schema):
            if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                continue
            column = table.column(index)
            try:
                column.validate(full=True)
                continue
            except pa.ArrowInvalid:
                pass
            rows = table[row].to_numpy()
            as_bytes = pc.cast(column, pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary())
            for j, value in enumerate(as_bytes.to_pylist()):
                if value is not None and not _utf8(value):
                    bad.setdefault(int(rows[j]), f"invalid UTF-8 in {name}.{field.name}")
    return bad


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def invalid_times(sources: pa.Table, row: str) -> dict[int, str]:
    """Messages whose triggering detection has no finite, plausible ``midpointMjdTai``."""
    if sources.num_rows == 0 or TIME_COLUMN not in sources.column_names:
        return {}
    if not pa.types.is_floating(sources.schema.field(TIME_COLUMN).type):
        return {int(r): f"{TIME_COLUMN} is not a number" for r in sources[row].to_numpy()}
    mjd = np.asarray(pc.fill_null(sources[TIME_COLUMN], np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(mjd) & (mjd >= MJD_RANGE[0]) & (mjd <= MJD_RANGE[1])
    rows = sources[row].to_numpy()
    return {int(rows[j]): f"invalid {TIME_COLUMN}={float(mjd[j])}" for j in np.flatnonzero(~good)}


def missing_ids(sources: pa.Table, row: str) -> dict[int, str]:
    """Messages whose triggering detection has no ``diaSourceId`` (a writer schema that made it nullable)."""
    if sources.num_rows == 0 or "diaSourceId" not in sources.column_names or not sources["diaSourceId"].null_count:
        return {}
    rows = sources[row].to_numpy()
    missing = pc.is_null(sources["diaSourceId"]).to_numpy(zero_copy_only=False)
    return {int(r): "missing diaSourceId" for r in rows[missing]}


# Columns every writer schema must give as numbers: the lake's keys, positions and times (a string there would not
# merge with the other alerts' tables, nor with the lake's).
NUMERIC_COLUMNS = {
    "sources": ("diaSourceId", "diaObjectId", "ra", "dec", TIME_COLUMN),
    "prv_sources": ("diaSourceId", "diaObjectId", "ra", "dec", TIME_COLUMN),
    "forced_sources": ("diaForcedSourceId", "diaObjectId", "ra", "dec", TIME_COLUMN),
    "objects": ("diaObjectId",),
    "cutouts": ("diaSourceId", "diaObjectId"),
}


def bad_flux_types(tables: Mapping[str, pa.Table]) -> str | None:
    """Why the fluxes, keys, positions or times of one writer schema's tables cannot be used (not numbers), or
    None."""
    for name, table in tables.items():
        types = dict(zip(table.schema.names, table.schema.types, strict=True))
        for column in (*NUMERIC_COLUMNS.get(name, ()), *FLUX_COLUMNS):
            dtype = types.get(column)
            if dtype is not None and not (
                pa.types.is_floating(dtype) or pa.types.is_integer(dtype) or pa.types.is_null(dtype)
            ):
                return f"{name}.{column} is {dtype}, not a number"
    return None
