"""The Avro schema of a filter's results (matches sent as Avro), derived from their Arrow schema.

It lives beside the SQL so that a filter is checked when it is registered: a result Avro cannot carry (an
unaliased expression's name, a type Avro lacks) is refused then, not at delivery on the first matching batch.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

UTC_FIELD = "UTC"
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AvroSchemaError(ValueError):
    """A result that cannot be written as Avro (a column name Avro refuses, a type it lacks)."""


def _avro_type(dtype: pa.DataType, name: str) -> Any:
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype):
        return "long" if dtype.bit_width > 32 or dtype == pa.uint32() else "int"
    if pa.types.is_float32(dtype) or pa.types.is_float16(dtype):
        return "float"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "double"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "bytes"
    if pa.types.is_timestamp(dtype):
        return {"type": "long", "logicalType": "timestamp-micros"}
    if pa.types.is_date(dtype):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return {"type": "array", "items": ["null", _avro_type(dtype.value_type, name)]}
    if pa.types.is_struct(dtype):
        return {
            "type": "record",
            "name": f"{name}_record",
            "fields": [
                {"name": _field_name(f.name), "type": ["null", _avro_type(f.type, f"{name}_{f.name}")], "default": None}
                for f in dtype
            ],
        }
    raise AvroSchemaError(f"column {name}: type {dtype} has no Avro equivalent here; cast it in the SELECT")


def _field_name(name: str) -> str:
    if not _AVRO_NAME.match(name):
        raise AvroSchemaError(f"column name {name!r} is not a valid Avro name: give the expression an alias (AS name)")
    return name


def avro_schema(schema: pa.Schema, filter_id: int, version: int) -> dict[str, Any]:
    """The Avro record schema of a filter version's matches (every field nullable), plus ``UTC``."""
    fields = [
        {"name": _field_name(f.name), "type": ["null", _avro_type(f.type, f.name)], "default": None} for f in schema
    ]
    fields.append({"name": UTC_FIELD, "type": "string"})
    return {"type": "record", "name": f"filter_{filter_id}_v{version}", "namespace": "nightjar", "fields": fields}
