"""The Transient Name Server's public objects file, read and normalised.

The TNS publishes its objects as CSV (``tns_public_objects.csv``): a first line with the export date (e.g.
``"2026-02-10 00:00:00"``), then a quoted header row and one quoted row per object. A Parquet file with the same
columns is accepted too. Every column listed in ``REQUIRED`` must be present; the names become
``SN 2022and``-style full names (prefix and name), positions are ``ra``/``dec`` in degrees.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nightjar.errors import UserError

REQUIRED = (
    "objid",
    "name_prefix",
    "name",
    "ra",
    "declination",
    "redshift",
    "typeid",
    "type",
    "reporting_group",
    "source_group",
    "discoverydate",
    "discoverymag",
    "filter",
    "reporters",
    "internal_names",
    "lastmodified",
)
TNS_SCHEMA = pa.schema(
    [
        pa.field("objid", pa.int64()),
        pa.field("tns_name", pa.string()),  # full name with prefix: "SN 2022and"
        pa.field("name_prefix", pa.string()),
        pa.field("name", pa.string()),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        pa.field("type", pa.string()),
        pa.field("typeid", pa.int64()),
        pa.field("redshift", pa.float64()),
        pa.field("discoverydate", pa.timestamp("us", tz="UTC")),
        pa.field("discoverymag", pa.float64()),
        pa.field("filter", pa.string()),
        pa.field("reporting_group", pa.string()),
        pa.field("source_group", pa.string()),
        pa.field("reporters", pa.string()),
        pa.field("internal_names", pa.string()),
        pa.field("lastmodified", pa.timestamp("us", tz="UTC")),
    ]
)


class TnsFileError(UserError):
    """A file that is not a TNS public-objects export: said plainly, nothing imported."""


@dataclass
class TnsFile:
    """A TNS public-objects file as read: the objects, and the export date of a CSV."""

    objects: pa.Table  # TNS_SCHEMA
    exported: str | None  # the CSV's first line (the export date), None for Parquet


def _times(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """TNS times ("2022-01-27 10:49:26.400") as UTC timestamps; empty text is null."""
    text = pc.cast(column, pa.string())
    text = pc.if_else(pc.equal(pc.utf8_trim_whitespace(text), ""), pa.scalar(None, pa.string()), text)
    values = np.array(text.to_pylist(), dtype="datetime64[us]")
    return pa.array(values, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))


def _numbers(column: pa.ChunkedArray | pa.Array, kind: pa.DataType) -> pa.Array:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), ""), pa.scalar(None, column.type), column)
    if pa.types.is_integer(kind):
        return pc.cast(pc.cast(column, pa.float64()), kind)
    return pc.cast(column, kind)


def normalise(raw: pa.Table, where: str) -> pa.Table:
    """The TNS columns as ``TNS_SCHEMA``; a TnsFileError naming the missing columns."""
    missing = [c for c in REQUIRED if c not in raw.column_names]
    if missing:
        raise TnsFileError(f"{where}: not a TNS objects file, missing column(s) {', '.join(missing)}")
    try:
        prefix = pc.fill_null(pc.cast(raw["name_prefix"], pa.string()), "")
        name = pc.cast(raw["name"], pa.string())
        full = pc.utf8_trim_whitespace(pc.binary_join_element_wise(prefix, name, " "))
        columns = {
            "objid": _numbers(raw["objid"], pa.int64()),
            "tns_name": full,
            "name_prefix": prefix,
            "name": name,
            "ra": _numbers(raw["ra"], pa.float64()),
            "dec": _numbers(raw["declination"], pa.float64()),
            "type": pc.cast(raw["type"], pa.string()),
            "typeid": _numbers(raw["typeid"], pa.int64()),
            "redshift": _numbers(raw["redshift"], pa.float64()),
            "discoverydate": _times(raw["discoverydate"]),
            "discoverymag": _numbers(raw["discoverymag"], pa.float64()),
            "filter": pc.cast(raw["filter"], pa.string()),
            "reporting_group": pc.cast(raw["reporting_group"], pa.string()),
            "source_group": pc.cast(raw["source_group"], pa.string()),
            "reporters": pc.cast(raw["reporters"], pa.string()),
            "internal_names": pc.cast(raw["internal_names"], pa.string()),
            "lastmodified": _times(raw["lastmodified"]),
        }
        table = pa.table(columns, schema=TNS_SCHEMA)
    except (pa.ArrowInvalid, ValueError, TypeError) as exc:
        raise TnsFileError(f"{where}: a TNS column has values of the wrong kind ({exc})") from None
    type_empty = pc.equal(pc.utf8_trim_whitespace(pc.fill_null(table["type"], "")), "")
    table = table.set_column(
        table.schema.get_field_index("type"),
        "type",
        pc.if_else(type_empty, pa.scalar(None, pa.string()), table["type"]),
    )
    bad = pc.or_(
        pc.or_(pc.is_null(table["objid"]), pc.is_null(table["ra"])),
        pc.or_(pc.is_null(table["dec"]), pc.is_null(table["name"])),
    )
    if pc.any(bad).as_py():
        first = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        raise TnsFileError(f"{where}: row {first + 1} has no objid, name or position")
    if not pc.all(pc.and_(pc.greater_equal(table["dec"], -90), pc.less_equal(table["dec"], 90))).as_py():
        raise TnsFileError(f"{where}: declinations must be in -90..90 degrees")
    return table


def read_tns(path: Path) -> TnsFile:
    """Read a TNS public-objects export: the CSV as the TNS publishes it, or Parquet with the same columns."""
    where = str(path)
    if not path.is_file():
        raise TnsFileError(f"{where}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            raw = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise TnsFileError(f"{where}: not a readable Parquet file ({exc})") from None
        return TnsFile(normalise(raw, where), None)
    data = path.read_bytes()
    first, _, rest = data.partition(b"\n")
    header = next(csv.reader([first.decode("utf-8", "replace")]), [])
    exported: str | None = None
    if len(header) <= 1:  # the export-date line; the header row follows
        exported = header[0].strip() if header else None
    else:
        rest = data  # no date line: the header comes first
    try:
        raw = pacsv.read_csv(
            io.BytesIO(rest),
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in REQUIRED if c not in ("ra", "declination")},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise TnsFileError(f"{where}: not a TNS CSV file ({exc})") from None
    return TnsFile(normalise(raw, where), exported)


def write_csv(table: pa.Table, path: Path, exported: str) -> None:
    """Write rows with the TNS columns as the TNS publishes them (tests, examples): the export date, then the
    quoted header and rows."""
    with open(path, "w", newline="") as out:
        out.write(f'"{exported}"\n')
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow(["" if v is None else v for v in row.values()])
