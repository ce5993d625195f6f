"""Users and their API tokens in the metadata database.

A user has a unique name, a role, an optional e-mail and, for annotators, the annotation topics it may write. The
token is shown once, when it is made; the database keeps only its SHA-256 digest. Tokens are 256 random bits, so a
fast digest is enough (a slow password hash defends low-entropy secrets; these are not), and the lookup is one
indexed equality.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from nightjar.settings import Settings
from nightjar.sql import metadata_db
from nightjar.sql.registry_models import UserRow

ANONYMOUS = "anonymous"
USER = "user"
POWER = "power"
ANNOTATOR = "annotator"
ADMIN = "admin"
ROLES = (ANONYMOUS, USER, POWER, ANNOTATOR, ADMIN)
TOKEN_PREFIX = "nj_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class AccountError(ValueError):
    """A user that does not exist, a name already taken, or a bad role, name or topic."""


@dataclass(frozen=True)
class User:
    """A caller of the API. ``id`` is None for anonymous callers."""

    name: str
    role: str
    email: str | None = None
    topics: tuple[str, ...] = ()
    id: int | None = None

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == ADMIN

    @property
    def anonymous(self) -> bool:
        """True for an anonymous caller (no token)."""
        return self.role == ANONYMOUS


ANONYMOUS_USER = User(name=ANONYMOUS, role=ANONYMOUS)


def engine(url: str) -> Engine:
    """An engine on the metadata database, its schema current (see ``nightjar.sql.metadata_db.engine``)."""
    return metadata_db.engine(url)


def digest(token: str) -> str:
    """The SHA-256 of a token, the only form in which tokens are stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random token (``nj_`` and 32 random bytes, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _detach(row: UserRow) -> User:
    topics = tuple(t for t in row.topics.split(",") if t)
    return User(name=row.name, role=row.role, email=row.email, topics=topics, id=row.id)


def check_role(role: str) -> str:
    """``role`` if it is a role a user may have (not anonymous); an AccountError otherwise."""
    if role not in ROLES or role == ANONYMOUS:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(r for r in ROLES if r != ANONYMOUS)}")
    return role


def check_topic(topic: str) -> str:
    """``topic`` if it is a valid annotation topic name; an AccountError otherwise."""
    if not _TOPIC.match(topic):
        raise AccountError(f"bad topic {topic!r}: letters, digits, '_', '.' and '-', at most 100 characters")
    return topic


def add_user(
    eng: Engine, name: str, *, role: str = USER, email: str | None = None, topics: tuple[str, ...] = ()
) -> tuple[User, str]:
    """Create a user; returns it and its token (the only time the token is seen)."""
    if not _NAME.match(name) or name in (ANONYMOUS, "local"):
        raise AccountError(f"bad user name {name!r}: letters, digits, '_', '.', '@', '-', not 'anonymous' or 'local'")
    check_role(role)
    if email is not None and ("@" not in email or len(email) > 320 or any(c.isspace() for c in email)):
        raise AccountError(f"bad e-mail address {email!r}")
    if role == ANNOTATOR and not topics:
        raise AccountError("an annotator needs at least one topic (--topic NAME)")
    token = new_token()
    with Session(eng) as session, session.begin():
        if session.scalar(select(UserRow).where(UserRow.name == name)) is not None:
            raise AccountError(f"user {name!r} exists")
        row = UserRow(
            name=name,
            role=role,
            email=email,
            topics=",".join(check_topic(t) for t in topics),
            token_sha256=digest(token),
        )
        session.add(row)
        session.flush()
        user = _detach(row)
    return user, token


def add_user_token(settings: Settings, name: str, role: str = USER, topics: tuple[str, ...] = ()) -> str:
    """Create a user in the Settings' metadata database; its token (scripts, tests, the demo)."""
    eng = engine(settings.metadata_url)
    try:
        return add_user(eng, name, role=role, topics=topics)[1]
    finally:
        eng.dispose()


def authenticate(eng: Engine, token: str) -> User | None:
    """The active user holding this token, or None."""
    with Session(eng) as session:
        row = session.scalar(select(UserRow).where(UserRow.token_sha256 == digest(token), UserRow.active))
        return None if row is None else _detach(row)


def get_user(eng: Engine, name: str) -> User:
    """The active or revoked user named ``name``; an AccountError when there is none."""
    with Session(eng) as session:
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise AccountError(f"no user {name!r}")
        return _detach(row)


def list_users(eng: Engine) -> list[User]:
    """The active users, in the order they were made."""
    with Session(eng) as session:
        return [_detach(r) for r in session.scalars(select(UserRow).where(UserRow.active).order_by(UserRow.id))]


def rotate_token(eng: Engine, name: str) -> str:
    """A new token for a user; the old one stops working at once."""
    token = new_token()
    with Session(eng) as session, session.begin():
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise AccountError(f"no user {name!r}")
        row.token_sha256 = digest(token)
    return token


def remove_user(eng: Engine, name: str) -> None:
    """Deactivate a user: the token stops working; the filters and annotations stay."""
    with Session(eng) as session, session.begin():
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise AccountError(f"no user {name!r}")
        row.active = False
        row.token_sha256 = digest(secrets.token_hex(32))  # nothing can present it
