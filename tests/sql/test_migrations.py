"""The metadata database's schema: made by the shipped migrations on SQLite and PostgreSQL, matching the models,
adopted from databases made before migrations, and never changed unattended on a server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from nightjar import paths
from nightjar.api import users
from nightjar.cli import main
from nightjar.settings import Settings
from nightjar.sql import metadata_db, registry
from nightjar.sql.registry_models import Base

REPO = Path(__file__).resolve().parents[2]
BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"

pytestmark = pytest.mark.both_databases


def test_a_new_database_is_made_at_head_and_matches_the_models(settings: Settings) -> None:
    eng = registry.engine(settings.metadata_url)
    try:
        state = metadata_db.state(eng)
        assert state.up_to_date and state.current == metadata_db.head()
        assert set(state.tables) == set(Base.metadata.tables)
        with eng.connect() as con:
            drift = compare_metadata(MigrationContext.configure(con, opts={"compare_type": True}), Base.metadata)
        assert drift == [], f"the models differ from what the migrations make; write a migration: {drift}"
    finally:
        eng.dispose()


def test_downgrade_to_base_and_upgrade_again(settings: Settings) -> None:
    eng = registry.engine(settings.metadata_url)
    try:
        registry.add_filter(eng, "bright", BRIGHT)
        assert metadata_db.downgrade(eng, "base").tables == ()
        assert metadata_db.upgrade(eng).up_to_date
        assert registry.list_filters(eng) == []
    finally:
        eng.dispose()


def test_openers_racing_on_a_fresh_database_make_it_once(settings: Settings) -> None:
    """Replicas start together on an empty database (here four threads, each with its own connection): all work,
    the schema is made once."""
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            metadata_db.engine(settings.metadata_url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    eng = metadata_db.create(settings.metadata_url)
    assert metadata_db.state(eng).up_to_date
    eng.dispose()


def test_db_commands_show_and_upgrade_the_schema(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("NIGHTJAR_DATABASE_URL", settings.database_url)

    def cli(*args: str) -> tuple[int, str]:
        code = main(["db", *args])
        return code, capsys.readouterr().out

    assert cli("current") == (
        1,
        f"{metadata_db.safe_url(settings.metadata_url)}: no schema yet; this Nightjar needs {metadata_db.head()}\n",
    )
    code, out = cli("upgrade")
    assert code == 0 and f"at revision {metadata_db.head()}; up to date" in out
    assert cli("current")[0] == 0
    code, out = cli("downgrade", "base")
    assert code == 0 and "no schema yet" in out


def test_a_sqlite_database_from_before_migrations_is_adopted(settings: Settings) -> None:
    """A home made by an earlier Nightjar (tables by create_all, users apart, no version table) keeps its rows."""
    if settings.database_url:
        pytest.skip("earlier Nightjars made their metadata with create_all on SQLite only")
    legacy = create_engine(settings.metadata_url)
    # The users table alone, as `nightjar user add` on a fresh home made it.
    Base.metadata.tables["users"].create(legacy)
    with legacy.begin() as con:
        con.execute(
            text(
                "INSERT INTO users (name, role, topics, token_sha256, active, created) "
                "VALUES ('old', 'user', '', :d, 1, '2026-01-01 00:00:00')"
            ),
            {"d": users.digest("nj_old")},
        )
    legacy.dispose()
    eng = registry.engine(settings.metadata_url)
    try:
        assert metadata_db.state(eng).up_to_date
        assert users.authenticate(eng, "nj_old") is not None
        assert registry.add_filter(eng, "bright", BRIGHT).id >= 1
    finally:
        eng.dispose()


def test_a_foreign_table_of_the_same_name_is_refused_with_the_reason(settings: Settings) -> None:
    if settings.database_url:
        pytest.skip("adoption is a SQLite matter")
    legacy = create_engine(settings.metadata_url)
    with legacy.begin() as con:
        con.execute(text("CREATE TABLE filters (id INTEGER PRIMARY KEY, title TEXT)"))
    legacy.dispose()
    with pytest.raises(RuntimeError, match="lacks the columns owner, name"):
        registry.engine(settings.metadata_url)


def test_a_server_database_behind_head_is_not_migrated_unattended(settings: Settings) -> None:
    """On PostgreSQL an old schema stops the process with what to do; `nightjar db upgrade` fixes it."""
    if not settings.database_url:
        pytest.skip("SQLite is upgraded at start")
    plain = metadata_db.create(settings.metadata_url)
    try:
        with plain.begin() as con:  # tables made before migrations, no version table
            con.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
        with pytest.raises(metadata_db.MetadataSchemaError, match="run `nightjar db upgrade`"):
            registry.engine(settings.metadata_url)
        assert "users" in inspect(plain).get_table_names()
    finally:
        plain.dispose()


def test_a_newer_schema_than_this_nightjar_knows_is_refused(settings: Settings) -> None:
    eng = registry.engine(settings.metadata_url)
    with eng.begin() as con:
        con.execute(text(f"UPDATE {metadata_db.VERSION_TABLE} SET version_num = '9999'"))
    eng.dispose()
    with pytest.raises(metadata_db.MetadataSchemaError, match="at revision 9999, which this Nightjar does not know"):
        registry.engine(settings.metadata_url)


def test_the_password_is_not_in_messages() -> None:
    url = "postgresql+psycopg://nj:s3cret@127.0.0.1:1/nightjar"
    with pytest.raises(metadata_db.MetadataSchemaError) as caught:
        metadata_db.engine(url)
    assert "s3cret" not in str(caught.value) and "cannot connect" in str(caught.value)


def test_no_module_makes_tables_outside_the_migrations() -> None:
    """create_all would make tables no migration knows of (and never change them later)."""
    sources = [
        p
        for folder in ("core", "api", "sql", "pipelines", "lake", "streams", "catalogs")
        for p in (REPO / folder).rglob("*.py")
    ]
    offenders = [str(p.relative_to(REPO)) for p in sources if "create_all(" in p.read_text()]
    assert offenders == []


def test_the_sqlite_file_is_where_the_home_says(settings: Settings) -> None:
    if settings.database_url:
        pytest.skip("SQLite only")
    registry.engine(settings.metadata_url).dispose()
    assert (settings.home / paths.METADATA_DB_FILE).is_file()
