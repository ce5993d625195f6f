"""LSST alerts in Parquet, as brokers export them (Fink, Rubin): one row per alert, nested columns.

The nested layout mirrors the Avro packet: ``diaSource`` and ``diaObject`` are structs, ``prvDiaSources`` and
``prvDiaForcedSources`` lists of structs, cutouts binary columns. A file becomes the same tables the columnar Avro
decoder yields (``Decoded``): the top-level columns, then one table per struct or list-of-structs column with
``_record``, the row of its alert. Each nested table is cast to the official schema of the alert's LSST version
(the ``lsst_schema_version`` column, else the latest): exporters store ids as doubles or ints as int64, and columns
the official record does not have stay out of the way. Ids stored as doubles are taken as given: above 2**53 a
double cannot hold every integer, so such an export has already rounded them.

Examples
--------
>>> import io, pyarrow as pa, pyarrow.parquet as pq
>>> buf = io.BytesIO()
>>> pq.write_table(pa.table({"diaSource": [{"diaSourceId": 7.0, "ra": 1.0}]}), buf)
>>> is_parquet(buf.getvalue()), decoded_tables(buf.getvalue()).tables["diaSource"]["diaSourceId"].to_pylist()
(True, [7])
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nightjar.errors import UserError
from nightjar.streams import schemas
from nightjar.streams.avro_columnar import RECORD, Decoded

MAGIC = b"PAR1"
_VERSION = re.compile(r"v(\d+)_(\d+)")


class ParquetAlertError(UserError):
    """A Parquet file that does not hold LSST alerts Nightjar can read."""


def is_parquet(payload: bytes | memoryview) -> bool:
    """True if the payload is a whole Parquet file (magic bytes at both ends)."""
    return bytes(payload[:4]) == MAGIC and bytes(payload[-4:]) == MAGIC


def read_table(payload: bytes | memoryview) -> pa.Table:
    """The table of a Parquet payload; a ParquetAlertError when it cannot be read."""
    try:
        return pq.read_table(pa.BufferReader(payload))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ParquetAlertError(f"unreadable Parquet: {exc}") from None


def check(payload: bytes | memoryview) -> None:
    """Refuse, from its footer alone, a Parquet file that holds no LSST alerts."""
    try:
        names = pq.ParquetFile(pa.BufferReader(payload)).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise ParquetAlertError(f"unreadable Parquet: {exc}") from None
    if "diaSource" not in names:
        raise ParquetAlertError("no diaSource column: not a Parquet file of LSST alerts")


def schema_id(table: pa.Table) -> int:
    """The LSST schema id of the alerts: from ``lsst_schema_version`` (``lsst.v9_0``) when present, else the latest."""
    if "lsst_schema_version" in table.column_names:
        versions = pc.drop_null(table["lsst_schema_version"]).cast(pa.string())
        if len(versions) and (found := _VERSION.search(str(versions[0].as_py()))):
            return schemas.schema_id(int(found[1]), int(found[2]))
    return schemas.latest_schema_id()


def _nested_rows(column: pa.ChunkedArray) -> tuple[pa.StructArray, np.ndarray] | None:
    """The struct rows of a struct or list-of-structs column and the alert row of each (None for other columns)."""
    array = column.combine_chunks()
    if pa.types.is_struct(array.type):
        present = np.flatnonzero(array.is_valid().to_numpy(zero_copy_only=False))
        return array.take(pa.array(present)), present
    if (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) and pa.types.is_struct(
        array.type.value_type
    ):
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        return pc.list_flatten(array), np.asarray(parents, dtype=np.int64)
    return None


def _cast(rows: pa.StructArray, target: pa.Schema, where: str) -> pa.Table:
    """The struct rows as a table of the official columns (missing ones null), cast to their official types."""
    have = {rows.type.field(i).name: child for i, child in enumerate(rows.flatten())}
    columns = []
    for fld in target:
        values = have.get(fld.name)
        if values is None:
            columns.append(pa.nulls(len(rows), fld.type))
            continue
        try:
            columns.append(values.cast(fld.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ParquetAlertError(f"{where}.{fld.name}: {values.type} is not {fld.type}: {exc}") from None
    return pa.Table.from_arrays(columns, schema=target)


def decoded_tables(payload: bytes | memoryview) -> Decoded:
    """A Parquet file of LSST alerts as the columnar decoder's tables (see the module docstring)."""
    check(payload)
    table = read_table(payload)
    sid = schema_id(table)
    alert = schemas.lsst_schema(sid)
    known = {f["name"]: f for f in alert["fields"]}
    top: dict[str, Any] = {}
    tables: dict[str, pa.Table] = {}
    for name in table.column_names:
        nested = _nested_rows(table[name])
        if nested is None:
            if not (name in known and pa.types.is_null(table[name].type)):
                top[name] = table[name]
            continue
        if name not in known:
            continue  # a nested column the packet does not have: out of the way
        rows, parents = nested
        cast = _cast(rows, schemas.arrow_record_schema(sid, name), name)
        tables[name] = cast.append_column(RECORD, pa.array(parents, pa.int64()))
    for name, fld in known.items():
        if name not in tables and _is_nested(fld["type"], schemas.named_types(alert)):
            # Absent, or null in every row (an exporter then stores it untyped): no rows, official columns.
            empty = schemas.arrow_record_schema(sid, name).empty_table()
            tables[name] = empty.append_column(RECORD, pa.array([], pa.int64()))
    for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
        if name in top:
            top[name] = top[name].cast(pa.binary())
    tables[""] = pa.table(top) if top else pa.table({RECORD: np.arange(table.num_rows)})
    return Decoded(tables, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))


def _is_nested(avro_type: Any, names: dict[str, Any]) -> bool:
    """Whether an alert field is a record or an array of records (possibly nullable): a table of its own."""
    if isinstance(avro_type, list):
        return any(_is_nested(t, names) for t in avro_type if t != "null")
    if isinstance(avro_type, str):
        avro_type = names.get(avro_type, avro_type)
    if not isinstance(avro_type, dict):
        return False
    if avro_type.get("type") == "array":
        return _is_nested(avro_type["items"], names)
    return avro_type.get("type") == "record"


def avro_records(payload: bytes | memoryview) -> tuple[int, list[dict[str, Any]]]:
    """The alerts as records of the official schema of their version, ready for an Avro writer (for replays)."""
    check(payload)
    table = read_table(payload)
    sid = schema_id(table)
    alert = schemas.lsst_schema(sid)
    names = schemas.named_types(alert)
    return sid, [_coerce(row, alert, names) for row in table.to_pylist()]


def _coerce(value: Any, avro_type: Any, names: dict[str, Any]) -> Any:
    """``value`` fitted to ``avro_type``: ints stored as doubles become ints, absent fields None."""
    if isinstance(avro_type, list):
        if value is None:
            return None
        branch = next(t for t in avro_type if t != "null")
        return _coerce(value, branch, names)
    if isinstance(avro_type, str) and avro_type in names:
        avro_type = names[avro_type]
    kind = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    if value is None:
        return None
    if kind == "record":
        return {f["name"]: _coerce(value.get(f["name"]), f["type"], names) for f in avro_type["fields"]}
    if kind == "array":
        return [_coerce(v, avro_type["items"], names) for v in value]
    if kind in ("int", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    return value
