"""The catalogue commands: ``nightjar catalog import|list|synth|openngc|demo|remove|refresh`` and ``nightjar context
RA DEC``. ``register`` adds them to the top-level parser (see ``nightjar.cli``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.settings import Settings

console = Console(stderr=True)
_REFRESH_HINT = "new alerts use the new catalogue set; `nightjar catalog refresh` reclassifies the lake's objects"
KINDS = ("galaxy", "star", "bright_star", "variable", "agn", "cv", "yso", "other")


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.build import BuildSpec
    from nightjar.catalogs.catalog import ColumnMap
    from nightjar.catalogs.import_catalog import import_catalog
    from nightjar.catalogs.rules import Kind
    from nightjar.cluster import dask_client

    columns = ColumnMap(
        ra=args.ra,
        dec=args.dec,
        id=args.id,
        z=args.z,
        photo_z=args.photo_z,
        major_axis=args.major_axis,
        major_axis_unit=args.major_axis_unit,
        mag=args.mag,
        type=args.type,
        distance=args.distance,
        keep_types=[t.strip() for t in args.keep_types.split(",")] if args.keep_types else None,
    )
    if args.keep_types and not args.type:
        raise ValueError("--keep-types needs --type COL (the column holding the types)")
    spec = BuildSpec(
        name=args.name,
        kind=Kind(args.kind),
        columns=columns,
        description=args.description or "",
        sources=tuple(str(p) for p in args.paths),
        radius_arcsec=args.radius,
        mag_filter=args.mag_filter,
        partition_rows=args.partition_rows,
    )
    with dask_client(settings) as client:
        info = import_catalog(
            client,
            settings.catalogs,
            spec,
            list(args.paths),
            fmt=args.format,
            chunk_rows=args.chunk_rows,
            hdu=args.hdu,
            delimiter=args.delimiter,
            console=console,
        )
    dropped = f", {info.dropped_rows} rows without a position dropped" if info.dropped_rows else ""
    console.print(
        f"catalogue {info.name} ({info.kind}): {info.rows} rows in {info.partitions} partitions, "
        f"{info.margin_rows} margin rows{dropped}; version {info.version}"
    )
    console.print(_REFRESH_HINT)
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs import layout
    from nightjar.catalogs.catalog import list_catalogs

    infos = list_catalogs(settings.catalogs)
    if args.format == "json":
        for info in infos:
            record = info.model_dump(mode="json")
            record["path"] = f"{settings.catalogs.uri}/{layout.check_name(info.name)}"
            print(json.dumps(record))
        return 0
    from rich.table import Table

    table = Table("name", "kind", "rows", "partitions", "margin rows", "version", "description")
    for info in infos:
        table.add_row(
            info.name,
            str(info.kind),
            str(info.rows),
            str(info.partitions),
            str(info.margin_rows),
            info.version,
            info.description,
        )
    Console(file=sys.stdout, width=200).print(table)
    return 0


def _synth(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.rules import Kind
    from nightjar.catalogs.synth import synth_catalog
    from nightjar.cluster import dask_client

    with dask_client(settings) as client:
        info = synth_catalog(
            client,
            settings.catalogs,
            args.name,
            args.rows,
            Kind(args.kind),
            seed=args.seed,
            chunk_rows=args.chunk_rows,
            partition_rows=args.partition_rows,
            console=console,
        )
    console.print(f"catalogue {info.name}: {info.rows} synthetic {info.kind} rows in {info.partitions} partitions")
    return 0


def _openngc(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.demo import install_openngc
    from nightjar.cluster import dask_client

    with dask_client(settings) as client:
        info = install_openngc(client, settings.catalogs, args.name, console=console)
    console.print(f"catalogue {info.name}: {info.rows} OpenNGC galaxies in {info.partitions} partitions")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.demo import install_demo_catalogs
    from nightjar.cluster import dask_client

    with dask_client(settings) as client:
        infos = install_demo_catalogs(client, settings.catalogs, synthetic_rows=args.rows, console=console)
    for info in infos:
        console.print(f"catalogue {info.name} ({info.kind}): {info.rows} rows")
    return 0


def _remove(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar import storage
    from nightjar.catalogs import layout
    from nightjar.catalogs.catalog import read_info

    fs = settings.catalogs.filesystem()
    target = layout.collection_dir(settings.catalogs, args.name)
    read_info(target, fs)  # refuses anything that is not a catalogue
    fs.delete_file(str(target / layout.INFO_FILE))  # no longer listed, even if the rest fails
    storage.remove_tree(fs, target)
    console.print(f"removed catalogue {args.name}")
    console.print(_REFRESH_HINT)
    return 0


def parse_position(ra_text: str, dec_text: str) -> tuple[float, float]:
    """Degrees, or sexagesimal (``10:41:07.2 -12:30:00``, hours for RA), checked to lie on the sky."""
    if any(c in ra_text for c in ":hms ") or any(c in dec_text for c in ":dms "):
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        try:
            coord = SkyCoord(ra_text, dec_text, unit=(u.hourangle, u.deg))
        except ValueError as exc:
            raise ValueError(f"cannot read the position {ra_text} {dec_text}: {exc}") from None
        return float(coord.ra.deg), float(coord.dec.deg)
    try:
        ra, dec = float(ra_text), float(dec_text)
    except ValueError:
        raise ValueError(f"RA and Dec must be degrees or sexagesimal, not {ra_text!r} {dec_text!r}") from None
    if not (math.isfinite(ra) and 0.0 <= ra <= 360.0):
        raise ValueError(f"RA must be within [0, 360] degrees, not {ra_text}")
    if not (math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ValueError(f"Dec must be within [-90, 90] degrees, not {dec_text}")
    return ra % 360.0, dec


def _context(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.report import context_report

    ra, dec = parse_position(args.ra, args.dec)
    report = context_report(settings, ra, dec, args.catalog)
    if args.format == "json":
        print(json.dumps(report, indent=1, default=str))
        return 0
    from rich.table import Table

    out = Console(file=sys.stdout, width=200)
    out.print(f"classification: {report['classification']}")
    out.print(report["description"])
    if not report["catalogues"]:
        out.print("(no catalogues installed: see `nightjar catalog import` and `nightjar catalog demo`)")
    if report["matches"]:
        table = Table("rank", "class", "catalogue", "object", "type", "sep″", "N″", "E″", "kpc", "z", "Mpc")

        def num(value: Any, digits: int) -> str:
            return "" if value is None else f"{value:.{digits}f}"

        for m in report["matches"]:
            table.add_row(
                str(m["rank"]),
                m["association_type"],
                m["catalogue_table_name"],
                str(m["catalogue_object_id"]),
                m["catalogue_object_type"] or "",
                num(m["separationArcsec"], 2),
                num(m["northSeparationArcsec"], 2),
                num(m["eastSeparationArcsec"], 2),
                num(m["physical_separation_kpc"], 2),
                num(m["z"] if m["z"] is not None else m["photoZ"], 4),
                num(m["distance"], 1),
            )
        out.print(table)
    return 0


def _refresh(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.catalogs.catalog import load_catalog_set
    from nightjar.cluster import dask_client
    from nightjar.pipelines.context import refresh

    catalogs = load_catalog_set(settings.catalogs, cache_mb=settings.catalog_cache_mb)
    if not catalogs.catalogs:
        console.print("[red]error:[/red] no catalogues installed (see `nightjar catalog import|openngc|demo`)")
        return 2
    with dask_client(settings) as client:
        report = refresh(settings.home, client, catalogs, chunk_rows=args.chunk_rows)
    console.print(
        f"{report.objects} objects in the lake; {report.classified} classified under catalogue set "
        f"{catalogs.version}; {report.stale_matches_removed} superseded matches removed"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``catalog`` and ``context`` to the top-level sub-parsers."""
    p = add_command(
        sub,
        "catalog",
        "Import, generate or list context catalogues (HATS layout).",
        "nightjar catalog demo",
        "nightjar catalog import gcvs gcvs.parquet --ra ra --dec dec --kind variable --type VarType",
        "nightjar catalog list",
        "nightjar catalog synth galaxies --rows 1000000",
        "nightjar catalog openngc",
        "nightjar catalog remove galaxies",
        "nightjar catalog refresh",
    )
    csub = p.add_subparsers(dest="action", required=True)
    name_help = "catalogue name (letters, digits, _ and -)"

    imp = add_command(
        csub,
        "import",
        "import a catalogue from CSV, FITS or Parquet files, with Dask",
        "nightjar catalog import gcvs gcvs.parquet --ra ra --dec dec --kind variable --type VarType",
        "nightjar catalog import hip hip.csv --ra ra_deg --dec dec_deg --kind bright_star --id HIP --mag Vmag "
        "--mag-filter V",
    )
    imp.set_defaults(handler=_import)
    imp.add_argument("name", help=name_help)
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="source files, or folders of Parquet")
    imp.add_argument("--ra", required=True, metavar="COL", help="right ascension column, degrees")
    imp.add_argument("--dec", required=True, metavar="COL", help="declination column, degrees")
    imp.add_argument("--kind", required=True, choices=KINDS, help="what the catalogue holds (decides the class)")
    imp.add_argument("--id", metavar="COL", help="object name or number column")
    imp.add_argument("--z", metavar="COL", help="spectroscopic redshift column")
    imp.add_argument("--photo-z", metavar="COL", help="photometric redshift column")
    imp.add_argument("--major-axis", metavar="COL", help="full major-axis length column (the galaxy's size)")
    imp.add_argument(
        "--major-axis-unit",
        choices=["arcsec", "arcmin", "deg"],
        default="arcsec",
        help="unit of the --major-axis column (default: %(default)s)",
    )
    imp.add_argument("--mag", metavar="COL", help="magnitude column (bright-star radius, galaxy association)")
    imp.add_argument("--mag-filter", metavar="BAND", help="the magnitude's band, e.g. V (reported as MagFilter)")
    imp.add_argument("--type", metavar="COL", help="object type column (reported; see --keep-types)")
    imp.add_argument("--keep-types", metavar="T1,T2", help="import only rows whose --type is one of these")
    imp.add_argument("--distance", metavar="COL", help="redshift-independent distance column, Mpc")
    imp.add_argument("--radius", type=float, metavar="ARCSEC", help="association radius (kind default otherwise)")
    imp.add_argument("--description", help="one line about the catalogue")
    imp.add_argument("--format", choices=["csv", "fits", "parquet"], help="default: from the file name")
    imp.add_argument("--hdu", type=int, help="FITS table HDU (default: the first table)")
    imp.add_argument("--delimiter", help="CSV field separator (default , or tab for .tsv)")
    imp.add_argument("--partition-rows", type=int, default=1_000_000, help="largest partition (rows)")
    imp.add_argument("--chunk-rows", type=int, default=2_000_000, help="rows per Dask task (Parquet, FITS)")

    lst = add_command(csub, "list", "list installed catalogues", "nightjar catalog list --format json")
    lst.set_defaults(handler=_list)
    lst.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="table (default) or json (one object per line, with the catalogue's path)",
    )

    syn = add_command(
        csub,
        "synth",
        "write a realistic synthetic catalogue (streams; 1e8 rows work)",
        "nightjar catalog synth galaxies --rows 1000000",
        "nightjar catalog synth stars --rows 100000000 --kind star --seed 3",
    )
    syn.set_defaults(handler=_synth)
    syn.add_argument("name", help=name_help)
    syn.add_argument("--rows", type=int, required=True, help="rows to generate")
    syn.add_argument(
        "--kind", choices=["galaxy", "star"], default="galaxy", help="what the rows are (default: %(default)s)"
    )
    syn.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    syn.add_argument("--chunk-rows", type=int, default=2_000_000, help="rows per Dask task")
    syn.add_argument("--partition-rows", type=int, help="largest partition (rows)")

    ngc = add_command(csub, "openngc", "install the OpenNGC galaxies shipped with pyongc", "nightjar catalog openngc")
    ngc.set_defaults(handler=_openngc)
    ngc.add_argument("name", nargs="?", default="openngc", help=f"{name_help} (default: %(default)s)")

    demo = add_command(
        csub,
        "demo",
        "install the demo catalogues: OpenNGC and synthetic galaxies and stars",
        "nightjar catalog demo --rows 50000",
    )
    demo.set_defaults(handler=_demo)
    demo.add_argument("--rows", type=int, default=200_000, help="rows of each synthetic catalogue")

    rm = add_command(csub, "remove", "delete an installed catalogue", "nightjar catalog remove galaxies")
    rm.set_defaults(handler=_remove)
    rm.add_argument("name", help="an installed catalogue (see `nightjar catalog list`)")

    ref = add_command(
        csub,
        "refresh",
        "classify lake objects whose context is missing or from other catalogues (after changes)",
        "nightjar catalog refresh --chunk-rows 100000",
    )
    ref.set_defaults(handler=_refresh)
    ref.add_argument("--chunk-rows", type=int, default=200_000, help="objects per classification round")

    ctx = add_command(
        sub,
        "context",
        "Classify a position against the catalogues (Sherlock style).",
        "nightjar context 10.6847 41.2690",
        "nightjar context 00:42:44.3 +41:16:09 --format json --catalog openngc",
    )
    ctx.set_defaults(handler=_context)
    ctx.add_argument("ra", help="degrees, or hh:mm:ss")
    ctx.add_argument("dec", help="degrees, or dd:mm:ss")
    ctx.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text (default: the class, its description and a table of ranked matches) or json",
    )
    ctx.add_argument("--catalog", action="append", metavar="NAME", help="only these catalogues (repeatable)")
