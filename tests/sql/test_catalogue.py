"""The system catalogue is out of reach: names resolve by scope, and the bound plan may read only the views.

Two walls: ``parse.validate`` resolves every table name as DuckDB binds it (a CTE defined in one subquery does
not make its name safe anywhere else), and ``sandbox.confine`` refuses any plan that scans something other than
the sandbox's own tables, whatever name or built-in macro led there. Together they keep one user's filter from
reading another's SQL (prepared statements) or the engine's settings.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from nightjar.sql import parse, sandbox, views
from nightjar.sql.batch_engine import BatchEngine
from nightjar.sql.compile import FilterSpec
from nightjar.sql.streaming import run_filters

SOURCES = pa.table(
    {
        "diaSourceId": pa.array([1, 2, 3], pa.int64()),
        "diaObjectId": pa.array([10, 10, 20], pa.int64()),
        "psfFlux": [1.0, 5.0, 9.0],
        "band": ["g", "r", "r"],
    }
)
LIMITS = sandbox.Limits(memory="256MB", threads=1, timeout_s=5.0, max_rows=1000)


def _catalogue() -> list[tuple[str, str]]:
    """Every built-in view of this DuckDB: (schema, name), e.g. ("pg_catalog", "pg_settings")."""
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT DISTINCT schema_name, view_name FROM duckdb_views() WHERE internal").fetchall()
    finally:
        con.close()
    return sorted((str(s), str(n)) for s, n in rows)


CATALOGUE = _catalogue()
MUST_COVER = {"pg_settings", "pg_prepared_statements", "sqlite_master", "duckdb_views", "duckdb_columns", "pg_proc"}


def test_the_catalogue_list_covers_the_known_leaks() -> None:
    names = {n for _, n in CATALOGUE}
    assert MUST_COVER - {"duckdb_views", "duckdb_columns"} <= names
    assert {"tables", "columns"} <= {n for s, n in CATALOGUE if s == "information_schema"}


@pytest.fixture
def box():
    made = sandbox.connect(views.with_placeholders({"sources": SOURCES}), LIMITS)
    yield made
    made.close()


def _scope_tricks(name: str) -> list[str]:
    """Ways to make a catalogue name look like a CTE of the query."""
    return [
        f"SELECT * FROM (WITH {name} AS (SELECT 1) SELECT 1) t, {name}",
        f"SELECT * FROM {name} WHERE EXISTS (WITH {name} AS (SELECT 1) SELECT 1)",
        f"SELECT (WITH {name} AS (SELECT 1) SELECT 1), * FROM {name}",
        f"WITH {name} AS (SELECT * FROM {name}) SELECT * FROM {name}",
        f"WITH {name} AS MATERIALIZED (SELECT * FROM {name}) SELECT * FROM {name}",
        f"WITH x AS (SELECT * FROM {name}), {name} AS (SELECT 1) SELECT * FROM x",
        f"WITH RECURSIVE {name} AS (SELECT * FROM {name}) SELECT * FROM {name}",
        f"WITH RECURSIVE {name} AS (SELECT * FROM {name} UNION ALL SELECT * FROM {name}) SELECT * FROM {name}",
        f"(WITH {name} AS (SELECT 1) SELECT 1) UNION ALL SELECT count(*) FROM {name}",
        f"SELECT * FROM (DESCRIBE {name})",
        f"SELECT * FROM (SUMMARIZE {name})",
    ]


SCOPE_ESCAPES = [sql for name in sorted(MUST_COVER) for sql in _scope_tricks(name)]


@pytest.mark.parametrize("sql", SCOPE_ESCAPES)
def test_a_cte_name_does_not_open_the_catalogue(box: sandbox.Sandbox, sql: str) -> None:
    with pytest.raises(sandbox.QueryError) as caught:
        sandbox.run(box, sql, LIMITS)
    assert "the tables are" in str(caught.value) or "not one of the tables" in str(caught.value)


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("WITH a AS (SELECT 1 AS x), b AS (SELECT x + 1 AS x FROM a) SELECT x FROM b", [2]),
        ("WITH a AS (SELECT 2 AS x) SELECT (SELECT x FROM a) AS x", [2]),
        ("WITH a AS (SELECT 3 AS x) SELECT x FROM (SELECT * FROM (SELECT x FROM a))", [3]),
        ("WITH RECURSIVE t AS (SELECT 1 AS x UNION ALL SELECT x + 1 FROM t WHERE x < 4) SELECT max(x) x FROM t", [4]),
        ("WITH sources AS (SELECT 7 AS x) SELECT x FROM sources", [7]),
        ("SELECT x FROM (WITH a AS (SELECT 5 AS x) SELECT x FROM a)", [5]),
        ("WITH a AS (SELECT 1 AS x) SELECT x FROM a UNION ALL SELECT x FROM a ORDER BY x", [1, 1]),
    ],
)
def test_ctes_in_scope_still_work(box: sandbox.Sandbox, sql: str, rows: list[int]) -> None:
    assert sandbox.run(box, sql, LIMITS)["x"].to_pylist() == rows


def test_tables_read_resolves_by_scope() -> None:
    sql = "SELECT * FROM (WITH annotations AS (SELECT 1) SELECT 1) t, annotations"
    assert parse.tables_read(sql) == frozenset({"annotations"})
    assert parse.tables_read("WITH annotations AS (SELECT 1) SELECT * FROM annotations") == frozenset()


# The plan wall, on its own: SQL that never passed the parse check (as a shared pass's generated SQL would be).
PLAN_ESCAPES = [f'SELECT * FROM "{schema}"."{name}"' for schema, name in CATALOGUE] + [
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM pg_prepared_statements",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM duckdb_functions()",
    "SELECT * FROM duckdb_databases()",
    "SELECT pg_get_viewdef(1)",  # a built-in macro that reads duckdb_views() inside
    "SELECT format_type(1, 1)",  # reads duckdb_types()
    "SELECT diaSourceId FROM sources WHERE EXISTS (SELECT 1 FROM pg_settings)",
    "SELECT * FROM sources, (SELECT statement FROM pg_prepared_statements)",
]


@pytest.mark.parametrize("sql", PLAN_ESCAPES)
def test_the_plan_wall_refuses_the_catalogue(box: sandbox.Sandbox, sql: str) -> None:
    """Refused; except the few catalogue views that are constant rows (pg_am, ...), which must then say exactly
    what they say in an empty database: nothing of this connection's state."""
    try:
        got = sandbox.execute(box, sql, LIMITS)
    except sandbox.QueryError as exc:
        assert "not one of the tables" in str(exc)
        return
    fresh = duckdb.connect()
    try:
        assert got.to_pylist() == fresh.sql(sql).to_arrow_table().to_pylist()
    finally:
        fresh.close()


def test_the_plan_wall_allows_the_views(box: sandbox.Sandbox) -> None:
    sql = "SELECT count(*) AS n FROM sources s, range(2) r, unnest([1]) u WHERE s.psfFlux > (SELECT 0)"
    assert sandbox.execute(box, sql, LIMITS)["n"].to_pylist() == [6]


ALICE_SECRET = "alice-private-band-xyzzy"
ALICE = f"SELECT diaObjectId, diaSourceId FROM sources WHERE band <> '{ALICE_SECRET}'"


def _bob_attempts() -> list[str]:
    """Bob's filters: every catalogue view, by every trick, selecting everything it has."""
    out = []
    for schema, name in CATALOGUE:
        out += [
            f"SELECT s.diaObjectId, c.* FROM sources s, (WITH {name} AS (SELECT 1) SELECT 1) t, {name} c",
            f'SELECT s.diaObjectId, c.* FROM sources s, "{schema}"."{name}" c',
        ]
    out.append("SELECT diaObjectId, pg_get_viewdef(1) AS v FROM sources")
    return out


def test_a_filter_cannot_see_another_users_sql_or_data() -> None:
    """Alice's private filter is prepared on the same engine as Bob's attempts; Bob gets errors, never her SQL."""
    tables = views.with_placeholders({"sources": SOURCES})
    attempts = _bob_attempts()
    specs = [FilterSpec(1, 1, ALICE)] + [FilterSpec(100 + i, 1, sql) for i, sql in enumerate(attempts)]
    results = run_filters(tables, specs, LIMITS, workers=1)
    assert results[0].error is None and results[0].count == 3
    for result in results[1:]:
        assert result.matches is None and result.error, result.spec.sql
        assert ALICE_SECRET not in result.error
    # The same engine, where Alice's statement is prepared: Bob's SQL sent straight to execution is refused too.
    engine = BatchEngine(views.schemas_of(tables), LIMITS, workers=1)
    try:
        engine.load(tables)
        box = engine.boxes[0]
        assert sandbox.run(box, ALICE, LIMITS).num_rows == 3
        assert box.statements  # prepared on this connection
        for sql in ["SELECT statement FROM pg_prepared_statements", "SELECT * FROM duckdb_prepared_statements()"]:
            with pytest.raises(sandbox.QueryError):
                sandbox.execute(box, sql, LIMITS)
    finally:
        engine.close()
