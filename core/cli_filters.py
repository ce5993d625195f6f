"""``nightjar filter add|list|show|edit|copy|delete|backtest``: the filter registry from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from nightjar.settings import Settings

console = Console(stderr=True)


def add_parser(sub: argparse._SubParsersAction, handler: Any) -> None:
    text = "Register, change, list and backtest streaming filters."
    parser = sub.add_parser("filter", help=text, description=text)
    parser.set_defaults(handler=handler)
    actions = parser.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="register a filter (an existing name of yours gets a new version)")
    add.add_argument("name")
    add.add_argument("--sql", required=True)
    _channel_options(add)
    add.add_argument("--public", action="store_true", help="anyone may see and copy it")
    add.add_argument("--group", help="share it with a group")
    add.add_argument("--new-only", action="store_true", help="deliver an object only the first time it matches")

    listing = actions.add_parser("list", help="filters as JSON lines (yours and public ones)")
    listing.add_argument("--mine", action="store_true", help="only your own")

    show = actions.add_parser("show", help="one filter: SQL, outputs, health and version history")
    show.add_argument("id", type=int)

    edit = actions.add_parser("edit", help="change a filter (new SQL or mode: a new version; the topic stays)")
    edit.add_argument("id", type=int)
    edit.add_argument("--sql")
    edit.add_argument("--name")
    _channel_options(edit)
    onoff = edit.add_mutually_exclusive_group()
    onoff.add_argument("--active", dest="active", action="store_const", const=True)
    onoff.add_argument("--inactive", dest="active", action="store_const", const=False)
    seen = edit.add_mutually_exclusive_group()
    seen.add_argument("--public", dest="visibility", action="store_const", const="public")
    seen.add_argument("--private", dest="visibility", action="store_const", const="private")
    seen.add_argument("--group", dest="group")
    mode = edit.add_mutually_exclusive_group()
    mode.add_argument("--new-only", dest="mode", action="store_const", const="new")
    mode.add_argument("--every-alert", dest="mode", action="store_const", const="all")
    edit.add_argument("--no-email", action="store_true", help="remove every e-mail output")
    edit.add_argument("--no-webhook", action="store_true", help="remove every webhook output")

    copy = actions.add_parser("copy", help="copy a public filter to your own (a new id and topic)")
    copy.add_argument("id", type=int)
    copy.add_argument("--name")

    delete = actions.add_parser("delete", help="remove a filter (its id and topic are never reused)")
    delete.add_argument("id", type=int)

    backtest = actions.add_parser(
        "backtest", help="what a filter would have delivered on past nights (nothing is sent)"
    )
    backtest.add_argument("id", type=int)
    backtest.add_argument("--since", type=float, required=True, metavar="MJD")
    backtest.add_argument("--until", type=float, metavar="MJD")
    backtest.add_argument("--format", choices=["table", "json", "csv", "parquet"], default="table")
    backtest.add_argument("--out", type=Path)

    for p in (add, listing, show, edit, copy, delete, backtest):
        p.add_argument("--owner", default="local", help="whose filters (until accounts exist: a name)")


def _channel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", action="append", metavar="ADDR", help="send e-mail digests here (repeatable)")
    parser.add_argument("--webhook", action="append", metavar="URL", help="POST matches here (repeatable)")
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


def run(settings: Settings, args: argparse.Namespace) -> int:
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
    )
    outputs = ", ".join([*([flt.topic] if flt.kafka else []), *flt.emails, *flt.webhooks]) or "no outputs"
    console.print(f"filter {flt.id} ({flt.name}) version {flt.version} -> {outputs}")
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
    rows = ledger.read(Path(settings.home), flt.id)
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
    )
    console.print(f"filter {flt.id} ({flt.name}) now version {flt.version}, {'active' if flt.active else 'inactive'}")
    return 0


def _copy(settings: Settings, db: Any, args: argparse.Namespace) -> int:
    from nightjar.sql import registry

    flt = registry.copy_filter(db, args.id, owner=args.owner, name=args.name)
    console.print(f"filter {flt.id} ({flt.name}), a copy of {args.id}, -> {flt.topic}")
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
    result = backtest(settings, flt.spec, flt.mode, args.since, args.until)
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
