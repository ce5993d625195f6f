"""The metadata database (users, filters, watchlists): one engine factory, its schema kept by Alembic migrations.

The database is SQLite under ``NIGHTJAR_HOME`` by default, or any SQLAlchemy URL in ``NIGHTJAR_DATABASE_URL``
(``postgresql+psycopg://user:password@host/dbname`` with the ``postgresql`` extra installed). Its tables are made
and changed only by the migrations in ``nightjar.sql.migrations``; the version table (``alembic_version``) names
the revision a database is at.

When a process opens the database (``engine``) the schema is brought to the revision this Nightjar needs if that
is safe to do unattended:

- an empty database (no Nightjar table yet) is created at once, whatever its kind;
- a SQLite database (one box, one file under the home) is upgraded at once, also one made before migrations
  existed (its missing tables are added and it is stamped);
- a server database (PostgreSQL) that holds an older schema is left alone: opening it fails with a message that
  says to run ``nightjar db upgrade`` (after a backup), so that replicas of a new release never change a shared
  schema in the middle of a deployment.

Concurrent upgrades are serialised (a PostgreSQL advisory lock; SQLite's write lock), so two processes that start
together on a fresh database create it once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from nightjar.errors import UserError

# The migration environment, shipped in the package (a package-resource location works from a wheel).
SCRIPT_LOCATION = "nightjar.sql:migrations"
VERSION_TABLE = "alembic_version"
# Any constant shared by every Nightjar process: the key of the PostgreSQL advisory lock held while migrating.
_PG_LOCK_KEY = 0x4E494748544A4152  # "NIGHTJAR"
_DRIVERS = {
    "postgresql": "psycopg (pip install 'nightjar[postgresql]')",
}


class MetadataSchemaError(UserError, RuntimeError):
    """The metadata database cannot be used as it is: its schema is older or newer than this Nightjar's, or
    the URL names a database or driver that is not available."""


@dataclass(frozen=True)
class SchemaState:
    """Where a metadata database's schema stands."""

    url: str  # the database URL, password hidden
    current: str | None  # the revision in its version table; None: never migrated
    head: str  # the revision this Nightjar needs
    tables: tuple[str, ...]  # the tables it holds (besides the version table)

    @property
    def up_to_date(self) -> bool:
        """True when the database is at the revision this Nightjar needs."""
        return self.current == self.head

    @property
    def empty(self) -> bool:
        """True when the database has neither a revision nor tables."""
        return self.current is None and not self.tables

    @property
    def unmigrated(self) -> bool:
        """Tables made before migrations existed (``create_all``), no version table."""
        return self.current is None and bool(self.tables)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs.

    >>> safe_url("postgresql+psycopg://nj:secret@db:5432/nightjar")
    'postgresql+psycopg://nj:***@db:5432/nightjar'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def create(url: str) -> Engine:
    """A plain engine on the metadata database (schema untouched); SQLite enforces foreign keys on it."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise MetadataSchemaError(f"not a database URL: {exc}") from None
    try:
        eng = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        driver = _DRIVERS.get(parsed.get_backend_name(), parsed.drivername)
        raise MetadataSchemaError(
            f"cannot open the metadata database {safe_url(url)}: its driver is not installed ({driver}): {exc}"
        ) from None
    if eng.dialect.name == "sqlite":
        event.listen(eng, "connect", _sqlite_foreign_keys)
    return eng


def _sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def engine(url: str) -> Engine:
    """An engine on the metadata database, its schema current (created or upgraded when that is safe, see the
    module's notes); ``MetadataSchemaError`` when it cannot be used as it is."""
    eng = create(url)
    try:
        ensure_current(eng)
    except BaseException:
        eng.dispose()
        raise
    return eng


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the shipped migrations; ``connection``: the one they run on."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The revision this Nightjar's code needs (the migrations' single head)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise MetadataSchemaError(f"the metadata migrations have {len(heads)} heads ({heads}): merge them")
    return heads[0]


def known_revisions() -> set[str]:
    """Every revision of the migrations shipped with this Nightjar."""
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def state(eng: Engine) -> SchemaState:
    """The revision and tables of the database behind ``eng``."""
    with _connected(eng) as connection:
        return _state(connection)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _state(connection: Connection) -> SchemaState:
    current = _current(connection)
    tables = tuple(sorted(t for t in inspect(connection).get_table_names() if t != VERSION_TABLE))
    return SchemaState(safe_url(connection.engine.url.render_as_string(False)), current, head(), tables)


@contextmanager
def _connected(eng: Engine) -> Iterator[Connection]:
    try:
        connection = eng.connect()
    except Exception as exc:
        raise MetadataSchemaError(f"cannot connect to the metadata database {safe_url(str(eng.url))}: {exc}") from exc
    with connection:
        yield connection


def ensure_current(eng: Engine) -> None:
    """Bring the schema to ``head()`` when that is safe unattended, or raise ``MetadataSchemaError`` saying why
    not and what to do."""
    with _connected(eng) as connection:
        if _current(connection) == head():  # the common case: one small query per engine
            return
    # Decide under the migration lock: read outside it, another opener's commit could fall between reading the
    # version table and listing the tables, and its fresh schema would look like one made before migrations.
    with _migrating(eng) as connection:
        now = _state(connection)
        if now.up_to_date:  # another process made it while this one waited for the lock
            return
        if now.current is not None and now.current not in known_revisions():
            raise MetadataSchemaError(
                f"the metadata database {now.url} is at revision {now.current}, which this Nightjar does not know "
                f"(it needs {now.head}): a newer Nightjar migrated it; run that version, or restore a backup"
            )
        if now.empty or eng.dialect.name == "sqlite":
            command.upgrade(alembic_config(connection), "head")
            return
    what = "tables made before migrations existed" if now.unmigrated else f"revision {now.current}"
    raise MetadataSchemaError(
        f"the metadata database {now.url} holds {what}; this Nightjar needs revision {now.head}: back it up, then "
        "run `nightjar db upgrade` once (server databases are never migrated unattended)"
    )


def upgrade(eng: Engine, revision: str = "head") -> SchemaState:
    """Migrate the database up to ``revision`` (one process at a time); its state afterwards."""
    with _migrating(eng) as connection:
        command.upgrade(alembic_config(connection), revision)
    return state(eng)


def downgrade(eng: Engine, revision: str) -> SchemaState:
    """Migrate the database down to ``revision`` (``base``: no Nightjar table left)."""
    with _migrating(eng) as connection:
        command.downgrade(alembic_config(connection), revision)
    return state(eng)


@contextmanager
def _migrating(eng: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock until it commits."""
    with _connected(eng) as connection:
        if eng.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        elif eng.dialect.name == "sqlite":
            # Take SQLite's write lock first: a second process waits here, then finds the schema made.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()
