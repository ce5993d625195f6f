"""Arrow results as JSON records: 64-bit IDs as strings (JavaScript loses precision above 2**53)."""

from __future__ import annotations

import base64
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def is_id_column(name: str, dtype: pa.DataType) -> bool:
    """Integer columns named like identifiers (``diaObjectId``, ``candid``, ``objectId``, ``id``)."""
    lowered = name.lower()
    return pa.types.is_integer(dtype) and (lowered.endswith("id") or lowered == "candid")


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of ``table`` as JSON-ready dicts; ID columns as strings, NaN as null, bytes as base64."""
    columns: dict[str, list[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = _values(column)
        if is_id_column(name, column.type):
            values = [None if v is None else str(v) for v in values]
        elif pa.types.is_floating(column.type):
            values = [None if v is None or math.isnan(v) or math.isinf(v) else v for v in values]
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            values = [None if v is None else base64.b64encode(v).decode() for v in values]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _values(column: pa.ChunkedArray) -> list[Any]:
    """The column as Python values; values Python cannot hold (DuckDB's ``DATE '294247-01-10'``, ``'infinity'``
    timestamps) as Arrow prints them, ``<value out of range: ...>``, never an OverflowError."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError):
        pass
    try:
        return pc.cast(column, pa.string()).to_pylist()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [_scalar(v) for chunk in column.chunks for v in chunk]


def _scalar(value: pa.Scalar) -> Any:
    try:
        return value.as_py()
    except (OverflowError, ValueError):
        return f"<value out of range: {value!r}>"
