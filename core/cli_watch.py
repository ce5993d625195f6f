"""``nightjar watchlist|watchmap add|list|show|edit|delete|rerun``: watchlists and watchmaps from the command line.

A new list, or one whose cones or area changed, is matched over the lake's history at once, with a progress bar
(``--no-history`` skips it; ``rerun`` does it again). The live pipeline picks the change up with its next batch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.progress import bar
from nightjar.settings import Settings

console = Console(stderr=True)

OWNER_HELP = "act as this owner (default: %(default)s): only a list's owner may change or delete it"


def _common(p: argparse.ArgumentParser, creating: bool) -> None:
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--public", action="store_const", const="public", dest="visibility", help="anyone can see it")
    vis.add_argument(
        "--private", action="store_const", const="private", dest="visibility", help="only you (the default)"
    )
    vis.add_argument("--group", metavar="NAME", help="visibility 'group' (only the owner until groups exist)")
    p.add_argument("--description", help="a line saying what the list is for")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--active", action="store_const", const=True, dest="active", help="matched live (default)")
    state.add_argument(
        "--inactive", action="store_const", const=False, dest="active", help="kept, but not matched live"
    )
    p.add_argument("--owner", default="local", help=OWNER_HELP)
    p.add_argument(
        "--no-history", action="store_true", help="do not match the lake's history now (`rerun` does it later)"
    )
    p.set_defaults(visibility=None, active=None)
    if creating:
        p.set_defaults(creating=True)


def _kind(
    sub: argparse._SubParsersAction, kind: str, summary: str, examples: list[str], add: tuple[str, str]
) -> tuple[argparse._SubParsersAction, argparse.ArgumentParser]:
    """The ``nightjar watchlist`` or ``watchmap`` command: (its actions, its ``add`` action, given its name)."""
    command = add_command(sub, kind, summary, *examples)
    command.set_defaults(handler=run, kind=kind)
    actions = command.add_subparsers(dest="action", required=True)
    adding = add_command(actions, "add", *add)
    adding.add_argument("name", help=f"the {kind}'s name (unique among yours)")
    return actions, adding


def _edit(actions: argparse._SubParsersAction, kind: str, summary: str, example: str) -> argparse.ArgumentParser:
    """The ``edit`` action of a watchlist or watchmap, given its id and a new name."""
    edit = add_command(actions, "edit", summary, example)
    edit.add_argument("id", type=int, help=f"{kind} id")
    edit.add_argument("--name", help="a new name")
    return edit


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``watchlist`` and ``watchmap`` commands (add, list, show, edit, rerun, delete, ...) to the ``nightjar``
    sub-commands."""
    actions, add = _kind(
        sub,
        "watchlist",
        "Watchlists: your sources as cones, matched against every alert, live and over the history.",
        [
            "nightjar watchlist add my-stars stars.csv --radius 3",
            "nightjar watchlist add gcvs catalog:gcvs --radius 2 --public",
            "nightjar watchlist list",
            "nightjar watchlist show 1 --cones 10",
            "nightjar watchlist edit 1 --add more.csv --remove SN2024abc",
            "nightjar watchlist rerun 1",
            "nightjar watchlist delete 1",
        ],
        (
            "create a watchlist from a CSV (RA, Dec, ID[, radius]; ',' or '|'), a Parquet file or catalog:NAME",
            "nightjar watchlist add my-stars stars.csv --radius 3 --description 'my flare stars'",
        ),
    )
    add.add_argument(
        "file",
        help="CSV in Lasair's layout (RA, Dec, ID[, radius arcsec]; decimal degrees or sexagesimal; header "
        "optional), Parquet (ra, dec, name|id[, radius]) or catalog:NAME (an imported catalogue)",
    )
    add.add_argument(
        "--radius", type=float, default=2.0, metavar="ARCSEC", help="default cone radius (default: %(default)s″)"
    )
    _common(add, True)
    _lists(actions, "watchlist")
    edit = _edit(
        actions,
        "watchlist",
        "change a watchlist: its cones (a new version, matched over the history again), name or sharing",
        "nightjar watchlist edit 1 --add more.csv --remove SN2024abc --radius 5",
    )
    edit.add_argument("--radius", type=float, metavar="ARCSEC", help="a new default radius")
    edit.add_argument("--add", metavar="FILE", help="add the cones of this file (CSV, Parquet or catalog:NAME)")
    edit.add_argument("--remove", nargs="+", default=[], metavar="CONE", help="remove cones by ID (name) or coneId")
    edit.add_argument("--replace", metavar="FILE", help="replace every cone by this file's")
    _common(edit, False)

    actions, add = _kind(
        sub,
        "watchmap",
        "Watchmaps: sky areas (MOCs), matched against every alert, live and over the history.",
        [
            "nightjar watchmap add field area.moc.fits",
            "nightjar watchmap add gw bayestar.multiorder.fits --credible 0.9",
            "nightjar watchmap add patch --polygon 10,-40 20,-40 20,-30 10,-30",
            "nightjar watchmap add m31 --circle 10.6847 41.2690 3600",
            "nightjar watchmap list",
        ],
        (
            "create a watchmap from a MOC FITS file, a HEALPix probability map, a polygon or a circle",
            "nightjar watchmap add field area.moc.fits",
        ),
    )
    _area_arguments(add)
    _common(add, True)
    _lists(actions, "watchmap")
    edit = _edit(
        actions,
        "watchmap",
        "change a watchmap: a new area (matched over the history again), name or sharing",
        "nightjar watchmap edit 1 --circle 10.68 41.27 7200 --public",
    )
    _area_arguments(edit)
    _common(edit, False)


def _area_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a MOC FITS file (NUNIQ or RANGE) or a HEALPix probability map")
    p.add_argument("--polygon", nargs="+", metavar="RA,DEC", help="the polygon's vertices in degrees")
    p.add_argument("--circle", nargs=3, type=float, metavar=("RA", "DEC", "ARCSEC"), help="a circle")
    p.add_argument("--order", type=int, default=12, help="MOC order of polygons and circles (default: %(default)s)")
    p.add_argument(
        "--credible", type=float, default=0.9, help="credible level of a probability map (default: %(default)s)"
    )


def _lists(actions: argparse._SubParsersAction, kind: str) -> None:
    id_help = f"{kind} id (printed by `{kind} add`, shown by `{kind} list`)"
    listing = add_command(
        actions, "list", f"the {kind}s you can see (yours and public ones)", f"nightjar {kind} list --mine"
    )
    listing.add_argument("--mine", action="store_true", help="only yours")
    listing.add_argument("--owner", default="local", help=OWNER_HELP)
    listing.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format (default: %(default)s)"
    )
    show = add_command(
        actions,
        "show",
        f"one {kind}, with its history job",
        f"nightjar {kind} show 1" + (" --cones 10" if kind == "watchlist" else ""),
    )
    show.add_argument("id", type=int, help=id_help)
    show.add_argument("--owner", default="local", help=OWNER_HELP)
    if kind == "watchlist":
        show.add_argument("--cones", type=int, default=0, metavar="N", help="also print its first N cones")
    delete = add_command(actions, "delete", f"remove a {kind} and its hits", f"nightjar {kind} delete 1")
    delete.add_argument("id", type=int, help=id_help)
    delete.add_argument("--owner", default="local", help=OWNER_HELP)
    rerun = add_command(actions, "rerun", f"match a {kind} over the lake's history again", f"nightjar {kind} rerun 1")
    rerun.add_argument("id", type=int, help=id_help)
    rerun.add_argument("--owner", default="local", help=OWNER_HELP)


def _area(args: argparse.Namespace, required: bool) -> tuple[Any, str] | None:
    from nightjar.catalogs import watchmap

    given = [x for x in (args.file, args.polygon, args.circle) if x]
    if len(given) > 1:
        raise ValueError("give one area: a FILE, --polygon or --circle")
    if not given:
        if required:
            raise ValueError("give an area: a MOC or probability-map FILE, --polygon RA,DEC ... or --circle")
        return None
    if args.file:
        return watchmap.from_file(Path(args.file), args.credible)
    if args.polygon:
        try:
            vertices = [tuple(float(x) for x in v.split(",")) for v in args.polygon]
        except ValueError:
            raise ValueError("polygon vertices are RA,DEC pairs in degrees, e.g. 10,-40 20,-40 20,-30") from None
        if any(len(v) != 2 for v in vertices):
            raise ValueError("polygon vertices are RA,DEC pairs in degrees, e.g. 10,-40 20,-40 20,-30")
        return watchmap.from_polygon([(v[0], v[1]) for v in vertices], args.order), "polygon"
    ra, dec, radius = args.circle
    return watchmap.from_circle(ra, dec, radius, args.order), "circle"


def _history(settings: Settings, kind: str, list_id: int) -> None:
    from nightjar.pipelines.watch_history import match_history

    with bar(console, f"matching {kind} {list_id} over the history") as progress:
        result = match_history(settings, kind, list_id, progress)
    console.print(f"{kind} {list_id}: {result.alerts} alerts of the lake matched, {result.hits} hits")


def _describe(item: Any) -> dict[str, Any]:
    out = {k: v for k, v in vars(item).items()}
    out["created"], out["updated"] = item.created.isoformat(), item.updated.isoformat()
    return out


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out a ``watchlist`` or ``watchmap`` action on the registry and the watch files, matching a new or changed
    list over the lake's history."""
    from nightjar.catalogs.watch_files import read_cones
    from nightjar.catalogs.watch_migrate import watch_root
    from nightjar.sql import registry, watch_registry

    home = watch_root(settings)
    db = registry.engine(settings.metadata_url)
    kind: str = args.kind
    try:
        changed = False
        list_id: int | None = None
        if args.action == "add":
            visibility = "group" if args.group else (args.visibility or "private")
            options: dict[str, Any] = {
                "owner": args.owner,
                "visibility": visibility,
                "group": args.group,
                "description": args.description or "",
                "active": True if args.active is None else args.active,
            }
            if kind == "watchlist":
                cones = read_cones(args.file, settings.catalogs)
                made: Any = watch_registry.add_watchlist(
                    db, home, args.name, cones, radius_arcsec=args.radius, **options
                )
                console.print(f"watchlist {made.id} ({made.name}): {made.cones} cones, default radius {args.radius}″")
            else:
                area = _area(args, required=True)
                assert area is not None
                made = watch_registry.add_watchmap(db, home, args.name, area[0], area[1], **options)
                console.print(
                    f"watchmap {made.id} ({made.name}): {made.kind}, order {made.max_order}, "
                    f"{made.area_sq_deg:.4g} square degrees"
                )
            print(made.id)
            list_id, changed = made.id, True
        elif args.action == "list":
            lister = watch_registry.LIST_KINDS[kind].listed
            items: list[Any] = lister(db, owner=args.owner) if args.mine else lister(db, visible_to=args.owner)
            if args.format == "json":
                print(json.dumps([_describe(i) for i in items], indent=2))
            for i in items if args.format == "table" else []:
                size = f"{i.cones} cones, {i.radius_arcsec:g}″" if kind == "watchlist" else f"{i.area_sq_deg:.4g} deg²"
                state = "active" if i.active else "inactive"
                print(f"{i.id}\t{i.name}\t{i.owner}\t{i.visibility}\t{state}\tv{i.version}\t{size}")
        elif args.action == "show":
            item: Any = watch_registry.LIST_KINDS[kind].get(db, args.id)
            if not watch_registry.can_see(item.owner, item.visibility, args.owner):
                raise registry.RegistryError(f"no {kind} {args.id}")
            print(json.dumps(_describe(item), indent=2))
            if item.history_job:
                from nightjar.pipelines.watch_history import WatchJobManager

                job = WatchJobManager(settings).get(item.history_job)
                if job is not None:
                    print(f"history job {job.id}: {job.status}, {job.progress:g} %, {job.hits} hits")
            if kind == "watchlist" and args.cones:
                cones = watch_registry.read_cones(home, item).slice(0, args.cones)
                for row in cones.to_pylist():
                    print(f"{row['coneId']}\t{row['name']}\t{row['ra']:.7f}\t{row['dec']:.7f}\t{row['radius'] or ''}")
        elif args.action == "edit":
            changes: dict[str, Any] = {
                "requester": args.owner,
                "name": args.name,
                "description": args.description,
                "visibility": "group" if args.group else args.visibility,
                "group": args.group,
                "active": args.active,
            }
            if kind == "watchlist":
                item, changed = watch_registry.edit_watchlist(
                    db,
                    home,
                    args.id,
                    radius_arcsec=args.radius,
                    add=read_cones(args.add, settings.catalogs) if args.add else None,
                    remove=args.remove,
                    replace=read_cones(args.replace, settings.catalogs) if args.replace else None,
                    **changes,
                )
                console.print(f"watchlist {item.id} ({item.name}): version {item.version}, {item.cones} cones")
            else:
                area = _area(args, required=False)
                item, changed = watch_registry.edit_watchmap(
                    db,
                    home,
                    args.id,
                    moc=area[0] if area else None,
                    kind=area[1] if area else None,
                    **changes,
                )
                console.print(f"watchmap {item.id} ({item.name}): version {item.version}")
            list_id = item.id
        elif args.action == "delete":
            gone = watch_registry.LIST_KINDS[kind].delete(db, home, args.id, requester=args.owner, lake=settings.lake)
            console.print(f"deleted {kind} {gone.id} ({gone.name}) and its hits")
        elif args.action == "rerun":
            item = watch_registry.LIST_KINDS[kind].get(db, args.id)
            registry.check_owner(f"{kind} {args.id}", item.owner, args.owner)
            list_id, changed = item.id, True
        if changed and list_id is not None and not getattr(args, "no_history", False):
            _history(settings, kind, list_id)
    finally:
        db.dispose()
    return 0
