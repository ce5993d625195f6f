"""``nightjar tns import FILE``: the Transient Name Server's public objects, matched to the lake's objects.

The file is the TNS public-objects CSV as the TNS publishes it (``tns_public_objects.csv``: a first line with the
export date, then a quoted header row) or Parquet with its columns. An import replaces the ``tns`` and
``crossmatch_tns`` tables in one lake snapshot and announces the matches that are new or changed, so that the
filters reading ``crossmatch_tns`` run over those objects.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.settings import Settings

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tns import|status`` to the ``nightjar`` sub-commands."""
    tns = add_command(
        sub,
        "tns",
        "The Transient Name Server: import its public objects and match them to the lake's objects "
        "(tables tns and crossmatch_tns).",
        "nightjar tns import tns_public_objects.csv",
        "nightjar tns import tns_public_objects.parquet --radius 2",
        "nightjar tns status",
    )
    tns.set_defaults(handler=run)
    actions = tns.add_subparsers(dest="action", required=True)
    imp = add_command(
        actions,
        "import",
        "replace the TNS objects and their matches; filters reading crossmatch_tns run over the changed matches",
        "nightjar tns import tns_public_objects.csv",
    )
    imp.add_argument("file", type=Path, help="the TNS public-objects CSV (or Parquet)")
    imp.add_argument("--radius", type=float, default=1.5, help="match radius in arcsec (default: %(default)s)")
    imp.add_argument("--no-notify", action="store_true", help="do not trigger the filters reading crossmatch_tns")
    add_command(actions, "status", "the TNS objects and matches the lake holds", "nightjar tns status")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Import a TNS public-objects file and match it to the lake's objects (printing the number of matches), or print
    the row counts of the tns and crossmatch_tns tables."""
    from nightjar import paths
    from nightjar.lake import tns as tns_tables
    from nightjar.pipelines.tns_refresh import import_tns

    home = settings.lake
    if args.action == "import":
        result = import_tns(settings, args.file, args.radius, notify=not args.no_notify)
        exported = f" (exported {result.exported})" if result.exported else ""
        console.print(
            f"TNS{exported}: {result.entries} objects, {result.matches} lake objects within {args.radius:g}″, "
            f"{result.changed.num_rows} matches new or changed"
            + ("" if result.announced or args.no_notify else " (no Kafka: filters not triggered)")
        )
        print(result.matches)
    else:
        entries = tns_tables.read_table(home, paths.TNS)
        matches = tns_tables.read_table(home, paths.CROSSMATCH_TNS)
        print(f"tns\t{0 if entries is None else entries.num_rows}")
        print(f"crossmatch_tns\t{0 if matches is None else matches.num_rows}")
    return 0
