"""Writing query results in the formats the CLI offers: table, json, csv, parquet."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv", "parquet")


def write_result(table: pa.Table, fmt: str, out: Path | None) -> None:
    """Write ``table`` as ``fmt`` to ``out`` (stdout when None; parquet needs a file)."""
    from nightjar.records import to_records

    if fmt == "parquet":
        if out is None:
            raise ValueError("--format parquet needs --out FILE")
        pq.write_table(table, out)
        return
    if fmt == "json":
        text = json.dumps(to_records(table), default=str, indent=1) + "\n"
    elif fmt == "csv":
        buf = io.BytesIO()
        pcsv.write_csv(table, buf)
        text = buf.getvalue().decode()
    elif fmt == "table":
        text = _rich_table(table)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


def _rich_table(table: pa.Table) -> str:
    view = Table(*table.column_names)
    for row in table.to_pylist():
        view.add_row(*("" if v is None else str(v) for v in row.values()))
    console = Console(file=io.StringIO(), width=200)
    console.print(view)
    console.print(f"{table.num_rows} rows")
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()
