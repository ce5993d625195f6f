"""``nightjar db current|upgrade|downgrade``: the metadata database's schema (Alembic migrations)."""

from __future__ import annotations

import argparse

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.settings import Settings

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``db current|upgrade|downgrade`` to the ``nightjar`` sub-commands."""
    parser = add_command(
        sub,
        "db",
        "Show or migrate the metadata database's schema (users, filters, watchlists). SQLite under the home and "
        "empty databases are migrated when a command opens them; a PostgreSQL database with an older schema is "
        "migrated only by `nightjar db upgrade` (back it up first).",
        "nightjar db current",
        "NIGHTJAR_DATABASE_URL=postgresql+psycopg://nightjar:PASSWORD@db/nightjar nightjar db upgrade",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", required=True)
    add_command(
        actions,
        "current",
        "the database's revision and the one this Nightjar needs (exit 1 when they differ)",
        "nightjar db current",
    )
    up = add_command(actions, "upgrade", "migrate the schema to this Nightjar's revision", "nightjar db upgrade")
    up.add_argument("--revision", default="head", help="the revision to reach (default: %(default)s, the newest)")
    down = add_command(
        actions,
        "downgrade",
        "migrate the schema back to an earlier revision ('base' drops every Nightjar table and its rows)",
        "nightjar db downgrade 0001",
    )
    down.add_argument("revision", help="the revision to go back to, or 'base'")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Show or migrate the metadata database's schema; exit code 1 when the schema is not this Nightjar's revision after
    ``current`` or ``upgrade``."""
    from nightjar.sql import metadata_db

    eng = metadata_db.create(settings.metadata_url)
    try:
        if args.action == "upgrade":
            now = metadata_db.upgrade(eng, args.revision)
        elif args.action == "downgrade":
            now = metadata_db.downgrade(eng, args.revision)
        else:
            now = metadata_db.state(eng)
    finally:
        eng.dispose()
    at = f"at revision {now.current}" if now.current else "no schema yet" if now.empty else "unmigrated tables"
    verdict = "up to date" if now.up_to_date else f"this Nightjar needs {now.head}"
    print(f"{now.url}: {at}; {verdict}")
    return 0 if now.up_to_date or args.action == "downgrade" else 1
