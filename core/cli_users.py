"""``nightjar user add|list|token|remove``: API users and their tokens."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from nightjar.settings import Settings

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    text = "Create and manage API users and their tokens."
    parser = sub.add_parser("user", help=text, description=text)
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user; the token is printed alone on the last line")
    add.add_argument("name")
    add.add_argument("--role", default="user", choices=["user", "power", "annotator", "admin"])
    add.add_argument("--email")
    add.add_argument("--topic", action="append", default=[], help="an annotation topic (annotators; repeatable)")
    actions.add_parser("list", help="users as JSON lines (never their tokens)")
    token = actions.add_parser("token", help="replace a user's token (the old one stops working)")
    token.add_argument("name")
    remove = actions.add_parser("remove", help="revoke a user (filters and annotations stay)")
    remove.add_argument("name")


def run(settings: Settings, args: argparse.Namespace) -> int:
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
