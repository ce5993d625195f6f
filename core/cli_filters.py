"""``nightjar filter add|list|show|edit|copy|delete|backtest``: the filter registry from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.progress import bar
from nightjar.settings import Settings

console = Console(stderr=True)


OWNER_HELP = (
    "act as this owner (default: %(default)s, a name no API user can take): the owner of new filters and copies; "
    "only a filter's owner may edit or delete it, and other owners' private filters are hidden. Give a user's "
    "name (`nightjar user add`; over the API a filter's owner is the signed-in user) to act on their filters: "
    "the name is not checked against the users"
)
ID_HELP = "filter id (printed by `filter add`, shown by `filter list`)"
GROUP_HELP = (
    "visibility 'group', recorded with this group name (groups are not enforced yet: only the owner, and admins "
    "over the API, see it)"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``filter add|list|show|edit|copy|delete|backtest`` to the ``nightjar`` sub-commands."""
    example_sql = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"
    parser = add_command(
        sub,
        "filter",
        "Register, change, list and backtest streaming filters.",
        f'nightjar filter add bright --sql "{example_sql}"',
        "nightjar filter list --mine",
        "nightjar filter show 1",
        "nightjar filter edit 1 --inactive",
        "nightjar filter copy 1 --name my-bright",
        "nightjar filter delete 1",
        "nightjar filter backtest 1 --since 60950 --until 60960",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", required=True)

    add = add_command(
        actions,
        "add",
        "register a filter (an existing name of yours gets a new version)",
        f'nightjar filter add bright --sql "{example_sql}"',
        f'nightjar filter add bright --sql "{example_sql}" --new-only --email me@example.org --public',
    )
    add.add_argument("name", help="the filter's name (one of your filters with this name gets a new version)")
    add.add_argument(
        "--sql",
        required=True,
        help="one SELECT over the streaming views (sources, objects, forced_sources, context, annotations, ...), "
        "run on every micro-batch; it is checked before it is saved",
    )
    _channel_options(add)
    add.add_argument("--public", action="store_true", help="anyone may see and copy it")
    add.add_argument("--group", help=GROUP_HELP)
    add.add_argument("--new-only", action="store_true", help="deliver an object only the first time it matches")

    listing = add_command(
        actions, "list", "filters as JSON lines (yours and public ones)", "nightjar filter list --owner alice --mine"
    )
    listing.add_argument("--mine", action="store_true", help="only your own")

    show = add_command(
        actions, "show", "one filter: SQL, outputs, health and version history", "nightjar filter show 1"
    )
    show.add_argument("id", type=int, help=ID_HELP)

    edit = add_command(
        actions,
        "edit",
        "change a filter (new SQL or mode: a new version; the topic stays)",
        "nightjar filter edit 1 --inactive",
        'nightjar filter edit 1 --sql "SELECT diaObjectId, diaSourceId FROM sources WHERE psfFlux > 80000"',
        "nightjar filter edit 1 --new-only --email me@example.org --public",
    )
    edit.add_argument("id", type=int, help=ID_HELP)
    edit.add_argument("--sql", help="new SQL (checked; a new version)")
    edit.add_argument("--name", help="a new name (same version and topic)")
    _channel_options(edit, adding=True)
    onoff = edit.add_mutually_exclusive_group()
    onoff.add_argument(
        "--active",
        dest="active",
        action="store_const",
        const=True,
        help="switch it on again (clears its count of failures in a row)",
    )
    onoff.add_argument(
        "--inactive",
        dest="active",
        action="store_const",
        const=False,
        help="switch it off: the pipeline stops running it",
    )
    seen = edit.add_mutually_exclusive_group()
    seen.add_argument(
        "--public", dest="visibility", action="store_const", const="public", help="anyone may see and copy it"
    )
    seen.add_argument(
        "--private", dest="visibility", action="store_const", const="private", help="only its owner sees it"
    )
    seen.add_argument("--group", dest="group", help=GROUP_HELP)
    mode = edit.add_mutually_exclusive_group()
    mode.add_argument(
        "--new-only",
        dest="mode",
        action="store_const",
        const="new",
        help="deliver an object only the first time it matches (a new version)",
    )
    mode.add_argument(
        "--every-alert",
        dest="mode",
        action="store_const",
        const="all",
        help="deliver every matching alert, the mode of a new filter (a new version)",
    )
    edit.add_argument("--no-email", action="store_true", help="remove every e-mail output")
    edit.add_argument("--no-webhook", action="store_true", help="remove every webhook output")

    copy = add_command(
        actions,
        "copy",
        "copy a public filter to your own (a new id and topic)",
        "nightjar filter copy 1 --owner alice --name my-bright",
    )
    copy.add_argument("id", type=int, help="id of a public filter, or of one of yours")
    copy.add_argument("--name", help="the copy's name (default: the filter's name followed by ' (copy)')")

    delete = add_command(
        actions, "delete", "remove a filter (its id and topic are never reused)", "nightjar filter delete 1"
    )
    delete.add_argument("id", type=int, help=ID_HELP)

    backtest = add_command(
        actions,
        "backtest",
        "what a filter would have delivered on past nights (nothing is sent)",
        "nightjar filter backtest 1 --since 60950",
        "nightjar filter backtest 1 --since 60950 --until 60960 --format parquet --out deliveries.parquet",
    )
    backtest.add_argument("id", type=int, help=ID_HELP + "; yours or a public one")
    backtest.add_argument(
        "--since",
        type=float,
        required=True,
        metavar="MJD",
        help="first night: the lake's nights that end after this MJD",
    )
    backtest.add_argument(
        "--until",
        type=float,
        metavar="MJD",
        help="last night: nights that start at or before this MJD (default: up to the lake's last night)",
    )
    backtest.add_argument(
        "--format",
        choices=["table", "json", "csv", "parquet"],
        default="table",
        help="format of the deliveries (default: %(default)s, printed only if there are any; parquet needs --out)",
    )
    backtest.add_argument(
        "--out", type=Path, metavar="FILE", help="write the deliveries to this file (default: stdout)"
    )

    for p in (add, listing, show, edit, copy, delete, backtest):
        p.add_argument("--owner", default="local", help=OWNER_HELP)


def _channel_options(parser: argparse.ArgumentParser, adding: bool = False) -> None:
    also = ", added to its outputs" if adding else ""
    parser.add_argument("--email", action="append", metavar="ADDR", help=f"send e-mail digests here (repeatable{also})")
    parser.add_argument("--webhook", action="append", metavar="URL", help=f"POST matches here (repeatable{also})")
    parser.add_argument("--no-kafka", action="store_true", help="no Kafka topic output")
    parser.add_argument("--avro", action="store_true", help="Avro payloads (schema published) instead of JSON")


def _summary(flt: Any) -> dict[str, Any]:
    return {
        "id": flt.id,
        "name": flt.name,
        "owner": flt.owner,
        "version": flt.version,
        "active": flt.active,
        "visibility": flt.visibility,
        "mode": flt.mode,
        "topic": flt.topic if flt.kafka else None,
        "format": flt.format,
        "emails": list(flt.emails),
        "webhooks": list(flt.webhooks),
        "sql": flt.sql,
    }


def _warn(sql: str) -> None:
    """Say on stderr when the filter reads views that hold no rows yet (it is saved all the same)."""
    from nightjar.sql.filter_check import empty_view_warnings

    for warning in empty_view_warnings(sql):
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out a ``filter`` action on the metadata database and return its exit code."""
    from nightjar.sql import registry

    db = registry.engine(settings.metadata_url)
    try:
        return _ACTIONS[args.action](settings, db, args)
    finally:
        db.dispose()


def _add(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    flt = registry.add_filter(
        db,
        args.name,
        args.sql,
        owner=args.owner,
        visibility="public" if args.public else ("group" if args.group else "private"),
        group=args.group,
        mode="new" if args.new_only else "all",
        emails=args.email or (),
        webhooks=args.webhook or (),
        kafka=not args.no_kafka,
        format="avro" if args.avro else "json",
        home=settings.lake,
    )
    outputs = ", ".join([*([flt.topic] if flt.kafka else []), *flt.emails, *flt.webhooks]) or "no outputs"
    console.print(f"filter {flt.id} ({flt.name}) version {flt.version} -> {outputs}")
    _warn(flt.sql)
    print(flt.id)
    return 0


def _list(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    found = (
        registry.list_filters(db, owner=args.owner) if args.mine else registry.list_filters(db, visible_to=args.owner)
    )
    for flt in found:
        print(json.dumps(_summary(flt)))
    return 0


def _show(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.lake import ledger
    from nightjar.sql import registry

    flt = registry.get_filter(db, args.id)
    if flt.owner != args.owner and flt.visibility != "public":
        raise registry.RegistryError(f"filter {args.id} is private")
    out = _summary(flt)
    out["failures"] = flt.failures
    out["last_error"] = flt.last_error
    out["copied_from"] = flt.copied_from
    out["versions"] = [
        {"version": v.version, "name": v.name, "mode": v.mode, "created": v.created.isoformat(), "sql": v.sql}
        for v in registry.versions(db, args.id)
    ]
    rows = ledger.read(settings.lake, flt.id)
    delivered = rows.filter(rows["status"].to_numpy(zero_copy_only=False) == ledger.DELIVERED)
    out["delivered"] = {c: delivered["channel"].to_pylist().count(c) for c in flt.channels}
    print(json.dumps(out, indent=1))
    return 0


def _edit(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    current = registry.get_filter(db, args.id)
    emails = [] if args.no_email else (list(current.emails) + args.email if args.email else None)
    webhooks = [] if args.no_webhook else (list(current.webhooks) + args.webhook if args.webhook else None)
    flt = registry.edit_filter(
        db,
        args.id,
        requester=args.owner,
        sql=args.sql,
        name=args.name,
        active=args.active,
        visibility=args.visibility or ("group" if args.group else None),
        group=args.group,
        mode=args.mode,
        emails=emails,
        webhooks=webhooks,
        kafka=False if args.no_kafka else None,
        format="avro" if args.avro else None,
        home=settings.lake,
    )
    console.print(f"filter {flt.id} ({flt.name}) now version {flt.version}, {'active' if flt.active else 'inactive'}")
    _warn(flt.sql)
    return 0


def _copy(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    flt = registry.copy_filter(db, args.id, owner=args.owner, name=args.name, home=settings.lake)
    console.print(f"filter {flt.id} ({flt.name}), a copy of {args.id}, -> {flt.topic}")
    _warn(flt.sql)
    print(flt.id)
    return 0


def _delete(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    gone = registry.delete_filter(db, args.id, requester=args.owner)
    console.print(f"filter {gone.id} ({gone.name}) deleted; topic {gone.topic} will not be reused")
    return 0


def _backtest(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.output import write_result
    from nightjar.sql import registry
    from nightjar.sql.backtest import backtest

    flt = registry.get_filter(db, args.id)
    if flt.owner != args.owner and flt.visibility != "public":
        raise registry.RegistryError(f"filter {args.id} is private")
    with bar(console, f"backtesting filter {flt.id} night by night") as progress:
        result = backtest(settings, flt.spec, flt.mode, args.since, args.until, progress)
    for night in result.nights:
        note = f" ERROR: {night.error}" if night.error else ""
        console.print(
            f"night {night.night}: {night.alerts} alerts, {night.delivered.num_rows} would be delivered{note}"
        )
    console.print(
        f"filter {flt.id} ({flt.name}) v{flt.version}: {result.delivered} deliveries over {len(result.nights)} nights"
    )
    if args.format != "table" or args.out is not None or result.delivered:
        write_result(result.table(), args.format, args.out)
    sys.stdout.flush()
    return 0


_ACTIONS = {
    "add": _add,
    "list": _list,
    "show": _show,
    "edit": _edit,
    "copy": _copy,
    "delete": _delete,
    "backtest": _backtest,
}
