"""An escape and abuse corpus through every door that runs static SQL: the CLI, the query API, Lasair's query, the
query jobs API and the exports API.

Each query must be refused (or stopped) with a 4xx / exit code 2: no row of the catalogue, a file or another
user's data comes back (0 leaks), nothing is written under the home (0 writes), no 5xx, and a query that sits in
one huge scalar call is stopped near its time limit (the child process running it is killed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nightjar import cli, paths
from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.settings import Settings

CATALOGUE = [
    "pg_settings",
    "pg_prepared_statements",
    "sqlite_master",
    "duckdb_views",
    "duckdb_columns",
    "duckdb_tables",
    "duckdb_databases",
    "pg_proc",
    "pg_class",
    "pg_namespace",
    "information_schema.tables",
    "information_schema.columns",
    "duckdb_settings()",
    "duckdb_secrets()",
    "duckdb_functions()",
    "duckdb_extensions()",
    "duckdb_prepared_statements()",
]
TRICKS = [
    "SELECT * FROM {t}",
    "SELECT * FROM (WITH {n} AS (SELECT 1) SELECT 1) x, {t}",
    "WITH {n} AS (SELECT * FROM {t}) SELECT * FROM {n}",
    "SELECT (SELECT count(*) FROM {t}) AS n FROM objects",
    "SELECT * FROM objects WHERE EXISTS (SELECT * FROM {t})",
    "WITH RECURSIVE {n} AS (SELECT * FROM {t} UNION ALL SELECT * FROM {n}) SELECT * FROM {n}",
    "SELECT * FROM (DESCRIBE {t})",
]
FILES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_parquet('{home}/lake/sources/*.parquet')",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM '{home}/metadata.sqlite'",
    "SELECT * FROM sqlite_scan('{home}/metadata.sqlite', 'users')",
    "SELECT * FROM delta_scan('{home}/lake/sources')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('objects')",
    "SELECT * FROM pragma_table_info('objects')",
    "SELECT * FROM pragma_version()",
    "SELECT * FROM objects, read_csv('/etc/passwd')",
    "SELECT * FROM range(3) WHERE 1 IN (SELECT 1 FROM read_text('/etc/shadow'))",
]
STATEMENTS = [
    "COPY (SELECT 1) TO '{home}/out.csv'",
    "COPY objects TO '{home}/out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{home}/db'",
    "ATTACH '{home}/x.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "PRAGMA threads=64",
    "CREATE TABLE x AS SELECT 1",
    "CREATE MACRO evil() AS 1",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "INSERT INTO objects SELECT * FROM objects",
    "DELETE FROM objects",
    "UPDATE objects SET ra = 0",
    "DROP VIEW objects",
    "PREPARE p AS SELECT 1",
    "USE system",
    "SELECT 1; ATTACH '{home}/x.db' AS x",
    "CALL pragma_version()",
]
FUNCTIONS = [
    "SELECT current_setting('temp_directory')",
    "SELECT current_setting('home_directory')",
    "SELECT getenv('HOME')",
    "SELECT getvariable('x')",
    "SELECT current_query()",
    "SELECT json_serialize_sql('SELECT 1')",
    "SELECT write_log('x')",
    "SELECT sleep_ms(100000)",
    "SELECT pg_get_viewdef(1)",
    "SELECT format_type(1, 1)",
    "SELECT main.mag(1.0)",
    "SELECT system.main.current_setting('threads')",
    "SELECT * FROM secret_table",
    "SELECT * FROM settings",
    "SELECT * FROM objects AT (VERSION => 0)",
    "SHOW TABLES",
    "SUMMARIZE pg_settings",
    "DESCRIBE pg_settings",
]


def _corpus() -> list[str]:
    out = []
    for target in CATALOGUE:
        name = target.removesuffix("()").split(".")[-1]
        for trick in TRICKS:
            if "()" in target and ("{n} AS (SELECT * FROM {t})" in trick or "DESCRIBE" in trick):
                continue
            out.append(trick.format(t=target, n=name))
    return out + FILES + STATEMENTS + FUNCTIONS


CORPUS = _corpus()
# Queries that spend their whole time in one scalar call that interrupt() cannot stop.
HUGE_SCALARS = [
    "SELECT len(regexp_extract_all(repeat('ab', 50000000), '(a)(b)')) AS n",
    "SELECT length(lpad('x', 1500000000, 'y')) AS n",
    "SELECT len(list_distinct(range(100000000))) AS n",
]
LIMIT_S = 3.0


def test_the_corpus_is_large_enough() -> None:
    assert len(set(CORPUS)) >= 150


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, lake_builder) -> Settings:
    home = tmp_path_factory.mktemp("corpus") / "home"
    lake_builder(home, alerts=30, batches=1)
    return Settings(home=home, query_timeout_s=LIMIT_S, process_memory_cap="6GiB")


@pytest.fixture(scope="module")
def client(lake: Settings) -> Iterator[TestClient]:
    """A client signed in as an unlimited user (the corpus is beyond any role's rate limit)."""
    token = add_user_token(lake, "red-team", role="admin")
    with TestClient(create_app(lake), headers={"Authorization": f"Token {token}"}) as made:
        yield made


def _files(home: Path) -> set[tuple[str, int]]:
    """Every file under the home but DuckDB's temp space, with its size."""
    temp = home / paths.DUCKDB_TEMP_DIR
    return {(str(p), p.stat().st_size) for p in home.rglob("*") if p.is_file() and temp not in p.parents}


def _leaks(text: str, home: Path, sql: str) -> list[str]:
    """Signs of the machine's state in an answer (unless the query itself wrote them: errors quote it)."""
    markers = ["root:x:0:0", "access_mode", "CREATE TEMP VIEW", "enable_external_access", "__nj_p", str(home)]
    return [m for m in markers if m in text and m not in sql]


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~65 s on a quiet 2-core machine
def test_the_corpus_through_every_door(lake: Settings, client: TestClient, monkeypatch, capsys) -> None:
    home = Path(lake.home)
    before = _files(home)
    monkeypatch.setenv("NIGHTJAR_HOME", str(home))
    monkeypatch.setenv("NIGHTJAR_PROCESS_MEMORY_CAP", "off")  # the CLI runs in this process: do not cap pytest
    failures = []
    for template in CORPUS:
        sql = template.format(home=home)
        api = client.post("/api/v1/query", json={"sql": sql})
        if api.status_code != 400 or _leaks(api.text, home, sql):
            failures.append(("api", sql, api.status_code, api.text[:200]))
        form = {"selected": "*", "tables": "objects", "conditions": f"EXISTS ({sql})", "limit": 5}
        lasair = client.post("/lasair/api/query/", data=form)
        if lasair.status_code != 400 or _leaks(lasair.text, home, sql):
            failures.append(("lasair", sql, lasair.status_code, lasair.text[:200]))
        # Queued doors check the SQL when it is submitted: refused then, never queued.
        job = client.post("/api/v1/jobs", json={"sql": sql})
        if job.status_code != 400 or _leaks(job.text, home, sql):
            failures.append(("jobs", sql, job.status_code, job.text[:200]))
        export = client.post("/api/v1/exports", json={"table": "objects", "sql": sql})
        if export.status_code != 400 or _leaks(export.text, home, sql):
            failures.append(("exports", sql, export.status_code, export.text[:200]))
        code = cli.main(["query", sql, "--format", "json"])
        out = capsys.readouterr()
        if code != 2 or _leaks(out.out + out.err, home, sql):
            failures.append(("cli", sql, code, (out.out + out.err)[:200]))
    assert failures == [], failures[:10]
    assert _files(home) == before  # 0 writes


@pytest.mark.slow
@pytest.mark.parametrize("sql", HUGE_SCALARS)
def test_a_huge_scalar_call_is_stopped_near_its_limit(lake: Settings, client: TestClient, sql: str) -> None:
    """Generous bound: the limit is 3 s, the child is killed 1 s after it; the check allows for a loaded machine."""
    started = time.monotonic()
    api = client.post("/api/v1/query", json={"sql": sql})
    api_s = time.monotonic() - started
    assert api.status_code == 400 and "time limit of 3 s" in api.json()["detail"]
    started = time.monotonic()
    lasair = client.post("/lasair/api/query/", data={"selected": sql.removeprefix("SELECT "), "tables": "objects"})
    lasair_s = time.monotonic() - started
    assert lasair.status_code == 400 and "time limit" in lasair.text
    assert api_s < LIMIT_S + 10 and lasair_s < LIMIT_S + 10, (api_s, lasair_s)
    # The server still answers.
    assert client.post("/api/v1/query", json={"sql": "SELECT count(*) AS n FROM objects"}).status_code == 200
