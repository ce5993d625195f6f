"""``nightjar user add|list|token|remove``: API users and their tokens."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from nightjar.cli_help import add_command
from nightjar.settings import Settings

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``user add|list|token|remove`` to the ``nightjar`` sub-commands."""
    parser = add_command(
        sub,
        "user",
        "Create and manage API users and their tokens.",
        "nightjar user add alice --email alice@example.org",
        "nightjar user add tns-bot --role annotator --topic tns",
        "nightjar user list",
        "nightjar user token alice",
        "nightjar user remove alice",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", required=True)
    add = add_command(
        actions,
        "add",
        "create a user; the token is printed alone on the last line",
        "nightjar user add alice --email alice@example.org",
        "nightjar user add tns-bot --role annotator --topic tns --topic classifier",
        "TOKEN=$(nightjar user add bob --role power | tail -n 1)",
    )
    add.add_argument(
        "name",
        help="the user's name: letters, digits, '_', '.', '@' and '-' (up to 100 characters; not 'anonymous' or "
        "'local'); also the owner name of the filters the user makes over the API",
    )
    add.add_argument(
        "--role",
        default="user",
        choices=["user", "power", "annotator", "admin"],
        help="what the token may do (default: %(default)s): power gets larger query results and more requests "
        "(NIGHTJAR_ROLE_MAX_ROWS, NIGHTJAR_ROLE_REQUESTS_PER_MINUTE), annotator also writes annotations to its "
        "--topic topics, admin sees every filter, job and export, may delete any filter and has no request limit",
    )
    add.add_argument("--email", help="the user's e-mail address (kept and listed; not where filters send digests)")
    add.add_argument("--topic", action="append", default=[], help="an annotation topic (annotators; repeatable)")
    add_command(actions, "list", "users as JSON lines (never their tokens)", "nightjar user list")
    token = add_command(
        actions,
        "token",
        "replace a user's token (the old one stops working)",
        "nightjar user token alice     # the new token on the last line",
    )
    token.add_argument("name", help="the user's name")
    remove = add_command(
        actions, "remove", "revoke a user (filters and annotations stay)", "nightjar user remove alice"
    )
    remove.add_argument("name", help="the user's name")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out a ``user`` action; a new or replaced token is printed alone on the last line of stdout."""
    from nightjar.api import users

    settings.home.mkdir(parents=True, exist_ok=True)
    eng = users.engine(settings.metadata_url)
    try:
        if args.action == "add":
            user, token = users.add_user(eng, args.name, role=args.role, email=args.email, topics=tuple(args.topic))
            console.print(f"user {user.name} ({user.role}) created; keep this token, it is not stored:")
            print(token)
        elif args.action == "list":
            for u in users.list_users(eng):
                print(json.dumps({"name": u.name, "role": u.role, "email": u.email, "topics": list(u.topics)}))
        elif args.action == "token":
            token = users.rotate_token(eng, args.name)
            console.print(f"new token for {args.name}; the old one no longer works:")
            print(token)
        else:
            users.remove_user(eng, args.name)
            console.print(f"user {args.name} revoked")
    finally:
        eng.dispose()
    return 0
