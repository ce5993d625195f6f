"""Lake tables in a form that compares equal when their rows are equal."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths


def by_key(table: pa.Table, name: str) -> pa.Table:
    """``table`` (rows of the lake table ``name``) sorted by that table's key, NaN as null (so that equal tables
    compare equal)."""
    table = table.sort_by(paths.KEY_COLUMNS[name])
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column))
    return table
