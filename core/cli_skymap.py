"""``nightjar skymap add|list|show|remove``: gravitational-wave (and GRB, neutrino) skymaps from the command line.

A new map is checked, stored with its 50 % and 90 % credible regions and matched over the lake's history at once
(``--no-history`` skips that); the live pipeline matches it from its next batch, into ``mma_area_hits``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.progress import bar
from nightjar.settings import Settings

console = Console(stderr=True)


def _probabilities(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('give a JSON object such as {"BNS": 0.9, "Terrestrial": 0.1}')
    return value


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``skymap add|list|show|remove|deactivate|activate|listen`` to the ``nightjar`` sub-commands."""
    sm = add_command(
        sub,
        "skymap",
        "Skymaps: HEALPix probability maps of gravitational-wave, GRB or neutrino events, matched against the "
        "alerts of their active window (table mma_area_hits).",
        "nightjar skymap add bayestar.multiorder.fits",
        'nightjar skymap add S250101a.fits --window-days 14 --classification \'{"BNS": 0.95, "Terrestrial": 0.05}\'',
        "nightjar skymap list",
        "nightjar skymap show 1",
        "nightjar skymap remove 1",
        "nightjar skymap listen --topic igwn.gwalert     # GCN/IGWN JSON notices, beside `nightjar run`",
    )
    sm.set_defaults(handler=run)
    actions = sm.add_subparsers(dest="action", required=True)
    add = add_command(
        actions,
        "add",
        "store a multi-order (NUNIQ) or flat (NESTED/RING) HEALPix probability map and match it over the history",
        "nightjar skymap add bayestar.multiorder.fits --event-id S200129m",
    )
    add.add_argument("file", type=Path, help="the FITS skymap")
    add.add_argument("--event-id", help="the event's name (default: the header's OBJECT)")
    add.add_argument("--event-time", type=_time, help="ISO 8601 UTC (default: the header's DATE-OBS)")
    add.add_argument("--window-days", type=float, default=21.0, help="alerts this long after the event count")
    add.add_argument("--classification", type=_probabilities, help="class probabilities as JSON")
    add.add_argument("--properties", type=_probabilities, help="source properties (HasNS…) as JSON")
    add.add_argument("--no-history", action="store_true", help="do not match the lake's history now")
    listing = add_command(actions, "list", "the stored skymaps, newest event first", "nightjar skymap list")
    listing.add_argument("--format", choices=("table", "json"), default="table", help="output (default: table)")
    show = add_command(actions, "show", "one skymap's details and its hit count", "nightjar skymap show 1")
    show.add_argument("id", type=int, help="the skymap's id")
    for name, text in (
        ("remove", "remove a skymap and its hits"),
        ("deactivate", "stop matching it live"),
        ("activate", "match it live again"),
    ):
        p = add_command(actions, name, text, f"nightjar skymap {name} 1")
        p.add_argument("id", type=int, help="the skymap's id")
    listen = add_command(
        actions,
        "listen",
        "consume IGWN/GCN JSON notices (base64 skymap inside) from a Kafka topic and store their skymaps; run it "
        "beside `nightjar run`",
        "nightjar skymap listen --topic igwn.gwalert",
    )
    listen.add_argument("--topic", required=True, help="the Kafka topic of notices")
    listen.add_argument("--idle-exit", type=float, help="stop after this many seconds without a notice")
    listen.add_argument("--max-messages", type=int, help="stop after this many notices")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out a ``skymap`` action: store a probability map (and match it over the history), list, show, remove,
    (de)activate the stored maps, or listen to a topic of GCN/IGWN notices."""
    from nightjar.catalogs import skymap_store
    from nightjar.catalogs.skymap import read_skymap
    from nightjar.catalogs.watch_migrate import watch_root
    from nightjar.lake import mma_hits
    from nightjar.pipelines.skymap_history import drop_skymap, ingest_skymap

    home = watch_root(settings)
    if args.action == "add":
        skymap = read_skymap(args.file)
        options: dict[str, Any] = {
            "event_id": args.event_id,
            "event_time": args.event_time,
            "window_days": args.window_days,
            "classification": args.classification,
            "properties": args.properties,
            "source": str(args.file),
        }
        if args.no_history:
            info, result = ingest_skymap(home, skymap, history=False, lake=settings.lake, **options)
        else:
            with bar(console, "matching the skymap over the history") as progress:
                info, result = ingest_skymap(home, skymap, progress=progress, lake=settings.lake, **options)
        console.print(
            f"skymap {info.id} ({info.event_id}, {info.event_time}): 50 % {info.area50_sq_deg:.4g} deg², "
            f"90 % {info.area90_sq_deg:.4g} deg², window {info.window_days:g} days"
        )
        if result is not None:
            console.print(f"{result.alerts} alerts of the lake in its window, {result.hits} hits")
        print(info.id)
    elif args.action == "list":
        items = skymap_store.list_skymaps(home)
        if args.format == "json":
            print(json.dumps([asdict(i) for i in items], indent=2))
        else:
            for i in items:
                state = "active" if i.active else "inactive"
                print(
                    f"{i.id}\t{i.event_id}\t{i.event_time}\t{state}\t{i.window_days:g} d\t"
                    f"90% {i.area90_sq_deg:.4g} deg²"
                )
    elif args.action == "show":
        info = skymap_store.get_skymap(home, args.id)
        print(json.dumps({**asdict(info), "hits": mma_hits.rows_of_map(settings.lake, args.id).num_rows}, indent=2))
    elif args.action == "listen":
        from nightjar.pipelines.gcn_notices import listen

        report = listen(settings, args.topic, args.max_messages, args.idle_exit)
        console.print(
            f"{report.messages} notices: {report.skymaps} skymaps stored, {report.retractions} retractions, "
            f"{report.bad} not usable"
        )
    elif args.action == "remove":
        drop_skymap(home, args.id, settings.lake)
        console.print(f"skymap {args.id} removed, with its hits")
    else:
        info = skymap_store.set_active(home, args.id, args.action == "activate")
        console.print(f"skymap {info.id}: {'active' if info.active else 'inactive'}")
    return 0
