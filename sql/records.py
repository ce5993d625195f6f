"""Arrow results as JSON records: 64-bit IDs as strings (JavaScript loses precision above 2**53)."""

from __future__ import annotations

import base64
import math
from typing import Any

import pyarrow as pa


def is_id_column(name: str, dtype: pa.DataType) -> bool:
    """Integer columns named like identifiers (``diaObjectId``, ``candid``, ``objectId``, ``id``)."""
    lowered = name.lower()
    return pa.types.is_integer(dtype) and (lowered.endswith("id") or lowered == "candid")


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of ``table`` as JSON-ready dicts; ID columns as strings, NaN as null, bytes as base64."""
    columns: dict[str, list[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = column.to_pylist()
        if is_id_column(name, column.type):
            values = [None if v is None else str(v) for v in values]
        elif pa.types.is_floating(column.type):
            values = [None if v is None or math.isnan(v) or math.isinf(v) else v for v in values]
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            values = [None if v is None else base64.b64encode(v).decode() for v in values]
        columns[name] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
