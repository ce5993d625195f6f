"""The ``nightjar lake …`` and ``nightjar export`` commands, registered into the main parser by ``register``.

Handlers take the Settings and the parsed arguments and return an exit code; user errors (unknown table, bad
selection, bad SQL) are ``ValueError``s, which ``nightjar.cli.main`` prints and turns into exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nightjar import paths
from nightjar.cli_help import add_command
from nightjar.progress import bar
from nightjar.settings import Settings

console = Console(stderr=True)


def _print_rows(rows: list[dict[str, Any]], fmt: str, title: str) -> None:
    """Rows as JSON lines or as one table on stdout."""
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    view = Table(*(rows[0].keys() if rows else ["(empty)"]), title=title)
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row.values()))
    Console(file=sys.stdout, width=200).print(view)


def _tables(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.lake import maintain

    rows = [
        {
            "table": i.table,
            "version": i.version,
            "rows": i.rows,
            "files": i.files,
            "bytes": i.bytes,
            "partitions": i.partitions,
            "hpx29_stats": i.hpx29_stats,
            "last_commit": i.last_commit.isoformat(timespec="seconds"),
        }
        for i in maintain.tables(settings.lake)
    ]
    if not rows:
        console.print(f"no lake tables in {settings.lake}")
    _print_rows(rows, args.format, "lake tables")
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.lake import maintain

    entries = maintain.history(settings.lake, args.table, args.limit)
    if args.format == "json":
        rows = [
            {
                "version": e.version,
                "timestamp": e.timestamp.isoformat(),
                "operation": e.operation,
                "parameters": e.parameters,
                "metrics": e.metrics,
            }
            for e in entries
        ]
    else:
        rows = [
            {
                "version": e.version,
                "time (UTC)": e.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                "operation": e.operation,
                "summary": e.summary(),
            }
            for e in entries
        ]
    _print_rows(rows, args.format, f"{args.table} history")
    return 0


def _optimize(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.lake import maintain

    home = settings.lake
    if args.stats:
        named = [args.table] if args.table else [i.table for i in maintain.tables(home) if i.hpx29_stats is False]
        for table in named:
            if maintain.enable_hpx29_stats(home, table):
                console.print(f"{table}: the log now keeps hpx29 statistics for new and rewritten files")
    with bar(console, "optimizing tables") as progress:
        reports = maintain.optimize(home, args.table, target_size=args.target_size, progress=progress, fold_all=True)
    for r in reports:
        console.print(
            f"{r.table}: {r.mode}, files {r.files_before} -> {r.files_after}, {r.partitions_rewritten} partitions "
            f"rewritten in {r.commits} commits (version {r.version_before} -> {r.version_after}), "
            f"{r.conflicts} conflicts retried"
        )
    rewritten = sum(1 for r in reports if r.commits)
    console.print(
        f"optimized {len(reports)} tables ({rewritten} rewritten): files "
        f"{sum(r.files_before for r in reports)} -> {sum(r.files_after for r in reports)}"
    )
    return 0


def _vacuum(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.lake import maintain

    reports = maintain.vacuum(settings.lake, args.table, retention_hours=args.retention_hours, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for r in reports:
        console.print(f"{r.table}: {verb} {len(r.files)} files, {r.bytes} bytes")
        if args.dry_run:
            for name in r.files:
                print(f"{r.table}/{name}")
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.sql.export import Selection, export, parse_healpix

    healpix = parse_healpix(args.healpix) if args.healpix is not None else None
    selection = Selection(night=args.night, healpix=healpix, sql=args.sql)
    with bar(console, f"exporting {args.table} rows") as progress:
        manifest = export(
            settings, args.table, selection, args.out, rows_per_file=args.rows_per_file, progress=progress
        )
    console.print(f"exported {manifest['rows']} rows in {len(manifest['files'])} files to {args.out}")
    print(Path(args.out) / "manifest.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lake tables|history|optimize|vacuum`` and ``export`` to the ``nightjar`` sub-commands."""
    lake = add_command(
        sub,
        "lake",
        "Inspect and maintain the lake's Delta tables.",
        "nightjar lake tables",
        "nightjar lake history sources --limit 10",
        "nightjar lake optimize sources",
        "nightjar lake vacuum --dry-run",
    )
    lake_sub = lake.add_subparsers(dest="lake_command", required=True)
    tables = ", ".join(paths.TABLES)
    format_help = "table (default) or json (one object per line)"

    p = add_command(
        lake_sub,
        "tables",
        "version, rows, files, bytes and partitions of each table",
        "nightjar lake tables --format json",
    )
    p.add_argument("--format", choices=["table", "json"], default="table", help=format_help)
    p.set_defaults(handler=_tables)

    p = add_command(
        lake_sub,
        "history",
        "the commits of one table, newest first",
        "nightjar lake history sources --limit 10",
    )
    p.add_argument("table", help=f"a lake table: {tables}")
    p.add_argument("--limit", type=int, help="only the last N commits")
    p.add_argument("--format", choices=["table", "json"], default="table", help=format_help)
    p.set_defaults(handler=_history)

    p = add_command(
        lake_sub,
        "optimize",
        "compact files and sort them by hpx29 (safe while ingesting)",
        "nightjar lake optimize                  # every table",
        "nightjar lake optimize sources --stats  # with ingestion stopped",
    )
    p.add_argument("table", nargs="?", help=f"one table (default: all): {tables}")
    p.add_argument("--target-size", type=int, metavar="BYTES", help="target file size (default: 100 MiB)")
    p.add_argument(
        "--stats",
        action="store_true",
        help="first make the log keep hpx29 statistics (a metadata commit: run with ingestion stopped)",
    )
    p.set_defaults(handler=_optimize)

    p = add_command(
        lake_sub,
        "vacuum",
        "delete files removed from the tables longer ago than the retention",
        "nightjar lake vacuum --dry-run",
        "nightjar lake vacuum sources --retention-hours 24",
    )
    p.add_argument("table", nargs="?", help=f"one table (default: all): {tables}")
    p.add_argument(
        "--retention-hours",
        type=int,
        metavar="H",
        help="keep removed files this long (default: the table's, 168); time travel further back is lost",
    )
    p.add_argument("--dry-run", action="store_true", help="list the files without deleting them")
    p.set_defaults(handler=_vacuum)

    p = add_command(
        sub,
        "export",
        "Export a night, a HEALPix pixel or a SQL result as Parquet with a manifest.",
        "nightjar export sources --night 60950 --out night-60950",
        "nightjar export sources --healpix 5/1234 --out pixel-5-1234",
        'nightjar export sources --sql "SELECT * FROM sources WHERE psfFlux > 50000" --out bright',
        description="Write the selected rows of TABLE as Parquet files and manifest.json into the new folder "
        "OUT; on any error nothing is left at OUT.",
    )
    p.add_argument(
        "table",
        help=f"the lake table to export: {tables} (with --sql it only names the export; the SQL may read any table)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--night", type=int, help="one night (integer MJD)")
    which.add_argument("--healpix", metavar="ORDER/PIX", help="one nested HEALPix pixel, e.g. 5/1234")
    which.add_argument("--sql", help="one SELECT over the lake (sandboxed, capped at NIGHTJAR_QUERY_MAX_ROWS)")
    p.add_argument("--out", type=Path, required=True, help="a folder that does not exist yet")
    p.add_argument(
        "--rows-per-file", type=int, default=1_000_000, help="most rows in one Parquet file (default: %(default)s)"
    )
    p.set_defaults(handler=_export)
