"""Bulk export: one night, one HEALPix pixel or one SQL result of a lake table, as Parquet with a manifest.

An export is all or nothing. Files are written into a hidden temporary folder beside ``out`` and the folder is
renamed to ``out`` only once every file and ``manifest.json`` are complete; on any failure the temporary folder is
removed and the error raised, so ``out`` either holds a whole export or does not exist.

``manifest.json`` records the table, the selection (and the filters it became), the Delta version of each table
read, and per file its name, rows, bytes and SHA-256, with the total rows.

Examples
--------
>>> from nightjar.sql.export import Selection, export
>>> manifest = export(settings, "sources", Selection(night=60950), Path("night-60950"))  # doctest: +SKIP
>>> manifest["rows"], [f["name"] for f in manifest["files"]]  # doctest: +SKIP
(5210, ['part-00000.parquet'])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nightjar import __version__, paths
from nightjar.errors import UserError
from nightjar.lake import access, tables
from nightjar.progress import Progress
from nightjar.settings import Settings
from nightjar.storage import Home

FORMAT = "nightjar-export/1"
MANIFEST = "manifest.json"
ROWS_PER_FILE = 1_000_000
SQL_STABLE_ATTEMPTS = 3


class ExportError(UserError):
    """An export that cannot be made as asked; nothing was left at the output path."""


@dataclass(frozen=True)
class Selection:
    """Which rows to export: exactly one of a night, a HEALPix pixel (order, pixel) or a SQL query."""

    night: int | None = None
    healpix: tuple[int, int] | None = None
    sql: str | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.night, self.healpix, self.sql)]
        if sum(given) != 1:
            raise ExportError("select exactly one of --night, --healpix or --sql")


def parse_healpix(text: str) -> tuple[int, int]:
    """``"ORDER/PIXEL"`` as a checked (order, pixel) pair of the nested scheme.

    Examples
    --------
    >>> parse_healpix("5/1234")
    (5, 1234)
    """
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ExportError(f"--healpix wants ORDER/PIXEL with two non-negative integers (e.g. 5/1234), not {text!r}")
    order, pixel = int(parts[0]), int(parts[1])
    if order > paths.HPX_ORDER_MAX:
        raise ExportError(f"HEALPix order {order} is above the maximum {paths.HPX_ORDER_MAX}")
    npix = 12 * 4**order
    if pixel >= npix:
        raise ExportError(f"HEALPix pixel {pixel} does not exist at order {order} (0 to {npix - 1})")
    return order, pixel


def hpx29_range(order: int, pixel: int) -> tuple[int, int]:
    """The order-29 nested indices ``[low, high)`` inside ``pixel`` at ``order``.

    Examples
    --------
    >>> hpx29_range(29, 7)
    (7, 8)
    >>> hpx29_range(28, 1)
    (4, 8)
    """
    shift = 2 * (paths.HPX_ORDER_MAX - order)
    return pixel << shift, (pixel + 1) << shift


def _selection_filters(selection: Selection) -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
    if selection.night is not None:
        return {"night": selection.night}, [(paths.NIGHT, "=", int(selection.night))]
    assert selection.healpix is not None
    order, pixel = selection.healpix
    low, high = hpx29_range(order, pixel)
    described = {"healpix": {"order": order, "pixel": pixel, "hpx29_low": low, "hpx29_high_exclusive": high}}
    return described, [(paths.HPX29, ">=", low), (paths.HPX29, "<", high)]


def _table_scan(
    home: Home, table: str, selection: Selection
) -> tuple[Iterator[pa.RecordBatch], pa.Schema, dict[str, Any], dict[str, int]]:
    """Batches of the selected rows of ``table`` at its current version, pruned by partitions and statistics."""
    lake = access.open(home)
    lake.delta(table)  # a clear error if the table has no data
    schema = lake.schema(table)
    described, filters = _selection_filters(selection)
    column = filters[0][0]
    if column not in schema.names:
        raise ExportError(f"table {table!r} has no {column!r} column to select on")
    described["filters"] = [list(f) for f in filters]
    scanner = lake.dataset(table, filters).scanner(filter=pq.filters_to_expression(filters), batch_size=65_536)
    return scanner.to_batches(), schema, described, {table: lake.versions[table]}


def _versions(home: Home) -> dict[str, int]:
    versions = {}
    for table in paths.TABLES:
        dt = tables.open_table(home, table)
        if dt is not None:
            versions[table] = dt.version()
    return versions


def _sql_result(settings: Settings, sql: str, viewer: str | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The sandboxed result of ``sql`` and the table versions it read.

    ``query_lake`` reads each table's latest version; the versions are taken before and after and the query
    re-run if a commit landed in between, so the manifest can name the versions read. Under continuous
    ingestion that may not settle: the manifest then gives both ends (``versions_before``/``versions_after``).
    """
    from nightjar.sql.engine import query_lake

    home = settings.lake
    for _ in range(SQL_STABLE_ATTEMPTS):
        before = _versions(home)
        result = query_lake(settings, sql, viewer=viewer)
        after = _versions(home)
        if before == after:
            return result, {"versions": before}
    return result, {"versions": None, "versions_before": before, "versions_after": after}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_files(
    folder: Path,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    rows_per_file: int,
    progress: Progress | None = None,
    total: int | None = None,
) -> list[dict[str, Any]]:
    """Write ``batches`` as ``part-NNNNN.parquet`` files of at most ``rows_per_file`` rows each; ``progress``
    hears the rows written out of ``total``."""
    files: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    rows_in_file = 0
    written = 0

    def close() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            path = folder / files[-1]["name"]
            files[-1].update(rows=rows_in_file, bytes=path.stat().st_size, sha256=_sha256(path))
            writer = None

    for batch in batches:
        start = 0
        while start < batch.num_rows:
            if writer is None:
                files.append({"name": f"part-{len(files):05d}.parquet"})
                writer = pq.ParquetWriter(folder / files[-1]["name"], schema, compression="zstd")
                rows_in_file = 0
            take = min(batch.num_rows - start, rows_per_file - rows_in_file)
            writer.write_batch(batch.slice(start, take))
            rows_in_file += take
            start += take
            written += take
            if progress is not None:
                progress(written, total)
            if rows_in_file >= rows_per_file:
                close()
    close()
    return files


def export(
    settings: Settings,
    table: str,
    selection: Selection,
    out: Path,
    *,
    rows_per_file: int = ROWS_PER_FILE,
    progress: Progress | None = None,
    viewer: str | None = None,
) -> dict[str, Any]:
    """Export the selected rows of ``table`` to the new folder ``out``; return the manifest written there.

    Parameters
    ----------
    settings
        Nightjar settings: the lake is ``settings.lake``; SQL runs under its query limits.
    table
        A lake table. With ``selection.sql`` it names the export; the SQL may read any table.
    selection
        A night (partition pruning), a HEALPix pixel (an ``hpx29`` range, pruned by file statistics) or SQL
        (run in the user sandbox, capped at ``settings.query_max_rows`` rows).
    out
        A folder that must not exist yet.
    rows_per_file
        The most rows in one Parquet file.
    progress
        Hears the rows written (out of the SQL result's rows; a table scan's total is not known ahead).
    viewer
        The user SQL runs for: other users' private watchlists' hits are hidden (None: everything).

    Raises
    ------
    ExportError
        Unknown table, missing column, an empty selection or an existing ``out``: nothing is written.
    """
    access.check_table_name(table)
    if rows_per_file < 1:
        raise ExportError("rows per file must be at least 1")
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise ExportError(f"{out} already exists: export into a new folder")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a folder")
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    partial.mkdir()
    try:
        if selection.sql is not None:
            result, versions = _sql_result(settings, selection.sql, viewer)
            described: dict[str, Any] = {"sql": selection.sql}
            batches: Iterable[pa.RecordBatch] = result.to_batches()
            schema, total = result.schema, result.num_rows
        else:
            scan, schema, described, read_versions = _table_scan(settings.lake, table, selection)
            batches, versions, total = scan, {"versions": read_versions}, None
        files = _write_files(partial, batches, schema, rows_per_file, progress, total)
        total = sum(f["rows"] for f in files)
        if total == 0:
            hint = _hint(settings, table, selection)
            raise ExportError(f"nothing to export: {_describe(table, selection)} selects no rows{hint}")
        manifest = {
            "format": FORMAT,
            "table": table,
            "selection": described,
            **versions,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "nightjar": __version__,
            "complete": True,
            "rows": total,
            "files": files,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.rename(partial, out)  # atomic on one filesystem: out appears whole or not at all
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _hint(settings: Settings, table: str, selection: Selection) -> str:
    """The nights a night-partitioned table holds, to say what would have worked."""
    if selection.night is None:
        return ""
    dt = access.delta_table(settings.lake, table)
    adds = pa.table(dt.get_add_actions(flatten=True))
    if paths.NIGHT in dt.metadata().partition_columns:
        low, high = pc.min_max(adds[f"partition.{paths.NIGHT}"]).values()
    elif f"min.{paths.NIGHT}" in adds.column_names:  # from the files' statistics
        low, high = pc.min(adds[f"min.{paths.NIGHT}"]), pc.max(adds[f"max.{paths.NIGHT}"])
    else:
        return ""
    return f" (the table holds nights {low} to {high})"


def _describe(table: str, selection: Selection) -> str:
    if selection.night is not None:
        return f"night {selection.night} of {table}"
    if selection.healpix is not None:
        return f"HEALPix pixel {selection.healpix[1]} at order {selection.healpix[0]} of {table}"
    return "the SQL query"
