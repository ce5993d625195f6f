"""Arrow results as JSON records: 64-bit IDs as strings (JavaScript loses precision above 2**53)."""

from __future__ import annotations

import base64
import json
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
        return f"<value out of range: {value.type}>"  # repr() would convert it, and fail, again


# Types the Arrow CSV writer takes as they are; everything else is written as its JSON text.
def _csv_native(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_date(dtype)
        or pa.types.is_time(dtype)
        or pa.types.is_timestamp(dtype)
        or pa.types.is_null(dtype)
    )


def as_text(table: pa.Table, index: int) -> pa.Table:
    """``table`` with column ``index`` as text: JSON for lists, structs and maps, Python's text else
    (intervals, unions, bits, DuckDB's extension types), blobs as base64."""
    column = table.column(index)
    values = _values(column)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        values = [None if v is None else base64.b64encode(v).decode() for v in values]
    texts = [None if v is None else _text(v) for v in values]
    return table.set_column(index, table.field(index).name, pa.array(texts, pa.string()))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=_leaf)
    return str(value)


def _leaf(value: Any) -> str:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)


def for_csv(table: pa.Table) -> pa.Table:
    """``table`` with every column the CSV writer cannot take as text."""
    for index, field in enumerate(table.schema):
        if not _csv_native(field.type):
            table = as_text(table, index)
    return table
