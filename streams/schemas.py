"""LSST alert schemas from the ``lsst-alert-packet`` package, and their Arrow equivalents.

Schema ids follow Rubin's registry: ``100 * major + minor`` (v11.1 is 1101).
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
from lsst.alert.packet.schema import get_latest_schema_version, get_schema_path

AvroSchema = dict[str, Any]

_PRIMITIVES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
}


class UnknownSchema(LookupError):
    """A schema id that lsst-alert-packet does not define."""


def schema_id(major: int, minor: int) -> int:
    """The id Nightjar gives an LSST alert schema version (100 · major + minor)."""
    return 100 * major + minor


def latest_schema_id() -> int:
    """The id of the newest LSST alert schema that lsst-alert-packet holds."""
    major, minor = get_latest_schema_version()
    return schema_id(int(major), int(minor))


@functools.cache
def lsst_schema(sid: int) -> AvroSchema:
    """The parsed alert schema of Rubin schema id ``sid`` (1101 for v11.1)."""
    major, minor = divmod(sid, 100)
    folder = Path(get_schema_path(major, minor))
    path = folder / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.is_file():
        raise UnknownSchema(f"unknown LSST schema id {sid} (no v{major}.{minor} in lsst-alert-packet)")
    parsed = fastavro.schema.load_schema(str(path))
    assert isinstance(parsed, dict)
    return parsed


@functools.cache
def registry_schema(registry_url: str, sid: int) -> AvroSchema:
    """The writer schema of id ``sid`` from a Confluent-compatible schema registry (``GET /schemas/ids/{id}``)."""
    url = f"{registry_url.rstrip('/')}/schemas/ids/{sid}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            schema = json.loads(json.loads(response.read())["schema"])
    except urllib.error.HTTPError as exc:
        raise UnknownSchema(f"schema id {sid} not in the registry at {registry_url} (HTTP {exc.code})") from None
    except (OSError, KeyError, ValueError) as exc:
        raise UnknownSchema(f"schema id {sid}: registry at {registry_url} unreadable: {exc}") from None
    if not isinstance(schema, dict):
        raise UnknownSchema(f"schema id {sid} from {registry_url} is not a record schema")
    return schema


def writer_schema(sid: int, registry_url: str | None = None) -> AvroSchema:
    """The writer schema of a wire-format message: from the registry when one is configured and knows the id,
    else from lsst-alert-packet (offline)."""
    if registry_url:
        try:
            return registry_schema(registry_url, sid)
        except UnknownSchema:
            try:
                return lsst_schema(sid)
            except UnknownSchema:
                pass
            raise
    return lsst_schema(sid)


def named_types(schema: Any, found: dict[str, AvroSchema] | None = None, namespace: str = "") -> dict[str, AvroSchema]:
    """Every named type in ``schema`` by full and short name, so later references by name can be resolved."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            name = str(schema["name"])
            space = schema.get("namespace", namespace if "." not in name else name.rsplit(".", 1)[0])
            short = name.rsplit(".", 1)[-1]
            for key in (name, short, f"{space}.{short}" if space else short):
                found.setdefault(key, schema)
            if kind == "record":
                for field in schema["fields"]:
                    named_types(field["type"], found, space)
        elif kind == "array":
            named_types(schema["items"], found, namespace)
        elif kind == "map":
            named_types(schema["values"], found, namespace)
    return found


def record_schema(alert_schema: AvroSchema, field_name: str) -> AvroSchema:
    """The record schema of an alert field (``diaSource``, ``diaObject``, the items of ``prvDiaSources``…)."""
    names = named_types(alert_schema)
    field = next(f for f in alert_schema["fields"] if f["name"] == field_name)
    avro_type = field["type"]
    if isinstance(avro_type, list):
        avro_type = next(t for t in avro_type if t != "null")
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        avro_type = avro_type["items"]
    if isinstance(avro_type, str):
        avro_type = names[avro_type]
    return avro_type


def arrow_type(avro_type: Any, names: dict[str, AvroSchema]) -> tuple[pa.DataType, bool]:
    """The Arrow type of an Avro type, and whether it is nullable."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise TypeError(f"unsupported Avro union {avro_type}")
        return arrow_type(branches[0], names)[0], True
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVES:
            return _PRIMITIVES[avro_type], False
        return arrow_type(names[avro_type], names)[0], False
    kind = avro_type["type"]
    if kind == "record":
        return pa.struct(arrow_fields(avro_type, names)), False
    if kind == "array":
        return pa.list_(arrow_type(avro_type["items"], names)[0]), False
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind], False
    raise TypeError(f"unsupported Avro type {avro_type}")


def arrow_fields(record: AvroSchema, names: dict[str, AvroSchema]) -> list[pa.Field]:
    """The Arrow fields of an Avro record's fields (``names``: the named types seen so far)."""
    fields = []
    for field in record["fields"]:
        dtype, nullable = arrow_type(field["type"], names)
        fields.append(pa.field(field["name"], dtype, nullable=nullable))
    return fields


@functools.cache
def arrow_record_schema(sid: int, field_name: str) -> pa.Schema:
    """The Arrow schema of one record type of an LSST alert schema, e.g. ``(1101, "diaSource")``.

    Every column is nullable: the lake holds alerts of several schema versions, and a field required in one
    version is absent from another.
    """
    alert = lsst_schema(sid)
    return pa.schema(
        [f.with_nullable(True) for f in arrow_fields(record_schema(alert, field_name), named_types(alert))]
    )
