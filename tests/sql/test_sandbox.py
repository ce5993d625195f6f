"""The sandbox against escape and abuse attempts: every one is refused with a message naming it, or stopped."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from nightjar.sql import sandbox, views
from nightjar.sql.parse import QueryTimeout

SOURCES = pa.table(
    {
        "diaSourceId": pa.array([1, 2, 3], pa.int64()),
        "diaObjectId": pa.array([10, 10, 20], pa.int64()),
        "psfFlux": [1.0, 5.0, 9.0],
        "band": ["g", "r", "r"],
    }
)


@pytest.fixture
def limits(tmp_path: Path) -> sandbox.Limits:
    return sandbox.Limits(
        memory="256MB", threads=1, timeout_s=2.0, max_rows=1000, temp_dir=tmp_path / "tmp", temp_dir_limit="100MB"
    )


@pytest.fixture
def box(limits: sandbox.Limits):
    made = sandbox.connect(views.with_placeholders({"sources": SOURCES}), limits)
    yield made
    made.close()


def test_select_over_views(box: sandbox.Sandbox, limits: sandbox.Limits) -> None:
    out = sandbox.run(box, "SELECT diaSourceId FROM sources WHERE psfFlux > 2 ORDER BY 1", limits)
    assert out["diaSourceId"].to_pylist() == [2, 3]


def test_full_select_power(box: sandbox.Sandbox, limits: sandbox.Limits) -> None:
    """CTEs, window functions, aggregates, joins, subqueries and DESCRIBE/SUMMARIZE all run."""
    sql = """
        WITH ranked AS (
            SELECT diaObjectId, psfFlux, row_number() OVER (PARTITION BY diaObjectId ORDER BY psfFlux DESC) AS k
            FROM sources
        )
        SELECT r.diaObjectId, r.psfFlux, c.n
        FROM ranked r JOIN (SELECT diaObjectId, count(*) AS n FROM sources GROUP BY ALL) c USING (diaObjectId)
        WHERE k = 1 AND r.psfFlux > (SELECT min(psfFlux) FROM sources)
        ORDER BY r.diaObjectId
    """
    out = sandbox.run(box, sql, limits)
    assert out.to_pylist() == [{"diaObjectId": 10, "psfFlux": 5.0, "n": 2}, {"diaObjectId": 20, "psfFlux": 9.0, "n": 1}]
    assert sandbox.run(box, "DESCRIBE sources", limits).num_rows == len(SOURCES.schema)
    assert sandbox.run(box, "SUMMARIZE sources", limits).num_rows == len(SOURCES.schema)


secret_table = pa.table({"password": ["hunter2"]})  # a Python variable the queries below try to read by name


ESCAPES = [
    # File, network and database readers.
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not available"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto() is not available"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", "read_parquet() is not available"),
    ("SELECT * FROM parquet_scan('/tmp/x.parquet')", "parquet_scan() is not available"),
    ("SELECT * FROM parquet_metadata('/tmp/x.parquet')", "parquet_metadata() is not available"),
    ("SELECT * FROM read_json_auto('/etc/passwd')", "read_json_auto() is not available"),
    ("SELECT * FROM read_ndjson_objects('/etc/passwd')", "read_ndjson_objects() is not available"),
    ("SELECT * FROM read_text('/etc/hostname')", "read_text() is not available"),
    ("SELECT * FROM read_blob('/etc/hostname')", "read_blob() is not available"),
    ("SELECT * FROM glob('/etc/*')", "glob() is not available"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv() is not available"),
    ("SELECT * FROM sqlite_scan('/tmp/x.db', 't')", "sqlite_scan() is not available"),
    ("SELECT * FROM '/etc/passwd'", "unknown table /etc/passwd"),
    ("SELECT * FROM 'https://example.com/data.csv'", "unknown table https://example.com/data.csv"),
    ("SELECT * FROM sources, read_csv('/etc/passwd')", "read_csv() is not available"),
    ("SELECT (SELECT count(*) FROM read_text('/etc/shadow')) FROM sources", "read_text() is not available"),
    # Statements other than one SELECT.
    ("COPY (SELECT 1) TO '/tmp/out.csv'", "only SELECT queries are allowed, not COPY"),
    ("COPY sources TO '/tmp/out.parquet' (FORMAT parquet)", "not COPY"),
    ("EXPORT DATABASE '/tmp/db'", "only SELECT"),
    ("ATTACH '/tmp/x.db' AS x", "not ATTACH"),
    ("DETACH memory", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "not LOAD"),
    ("SET enable_external_access = true", "not SET"),
    ("SET lock_configuration = false", "not SET"),
    ("RESET memory_limit", "only SELECT"),
    ("PRAGMA threads=64", "only SELECT"),
    ("CALL pragma_version()", "only SELECT"),
    ("CREATE TABLE x AS SELECT 1", "not CREATE"),
    ("CREATE MACRO evil() AS 1", "not CREATE"),
    ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", "only SELECT"),
    ("INSERT INTO sources SELECT * FROM sources", "not INSERT"),
    ("DELETE FROM sources", "not DELETE"),
    ("UPDATE sources SET psfFlux = 0", "not UPDATE"),
    ("DROP VIEW sources", "not DROP"),
    ("PREPARE p AS SELECT 1", "only SELECT"),
    ("USE system", "only SELECT"),
    ("SELECT 1; ATTACH '/tmp/x.db' AS x", "expected exactly one SELECT statement, got 2"),
    ("PIVOT sources ON band", "only SELECT"),
    # Python variables by name (replacement scans).
    ("SELECT * FROM secret_table", "unknown table secret_table"),
    ("SELECT * FROM box", "unknown table box"),
    ("SELECT password FROM secret_table", "unknown table secret_table"),
    # Engine internals: configuration, the environment, system catalogues, the running query's text.
    ("SELECT current_setting('temp_directory')", "function current_setting() is not available"),
    ("SELECT getenv('HOME')", "function getenv() is not available"),
    ("SELECT getvariable('x')", "function getvariable() is not available"),
    ("SELECT current_query()", "function current_query() is not available"),
    ("SELECT json_serialize_sql('SELECT 1')", "function json_serialize_sql() is not available"),
    ("SELECT write_log('hello')", "function write_log() is not available"),
    ("SELECT sleep_ms(100000)", "function sleep_ms() is not available"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not available"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets() is not available"),
    ("SELECT * FROM duckdb_extensions()", "duckdb_extensions() is not available"),
    ("SELECT * FROM duckdb_views()", "duckdb_views() is not available"),
    ("SELECT * FROM pragma_table_info('sources')", "pragma_table_info() is not available"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "query() is not available"),
    ("SELECT * FROM query_table('sources')", "query_table() is not available"),
    ("SELECT * FROM information_schema.tables", "unknown table information_schema.tables"),
    ("SELECT * FROM duckdb_tables", "unknown table duckdb_tables"),
    ("SELECT * FROM system.main.duckdb_settings", "unknown table system.main.duckdb_settings"),
    ("SELECT * FROM pg_catalog.pg_settings", "unknown table pg_catalog.pg_settings"),
    ("SELECT main.mag(psfFlux) FROM sources", "qualified function names are not available"),
    ("SELECT * FROM sources AT (VERSION => 1)", "AT (...) is not supported"),
    ("SHOW TABLES", "SHOW is not available"),
]


@pytest.mark.parametrize(("sql", "message"), ESCAPES)
def test_escape_corpus_is_refused(box: sandbox.Sandbox, limits: sandbox.Limits, sql: str, message: str) -> None:
    with pytest.raises(sandbox.QueryError) as caught:
        sandbox.run(box, sql, limits)
    assert message in str(caught.value)
    assert "__nj_" not in str(caught.value) and "python_arrow_scan" not in str(caught.value)


ABUSE = [
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
    "SELECT count(*) FROM range(100000) a, range(100000) b, range(100000) c",
    "SELECT count(*) FROM sources a, sources b, range(1000000000000) c",
    "SELECT * FROM range(1000000000000) ORDER BY random() LIMIT 1",
    "SELECT max(x) FROM (SELECT sum(range) OVER (ORDER BY range ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) x "
    "FROM range(10000000000))",
]


@pytest.mark.parametrize("sql", ABUSE)
def test_resource_abuse_is_stopped(box: sandbox.Sandbox, limits: sandbox.Limits, sql: str) -> None:
    with pytest.raises(sandbox.QueryError, match=r"time limit of 2 s|memory limit|temp"):
        sandbox.run(box, sql, limits)
    # The connection is still usable after the interruption.
    assert sandbox.run(box, "SELECT count(*) AS n FROM sources", limits)["n"].to_pylist() == [3]


def test_a_query_stopped_at_its_time_limit_says_so_by_its_type(box: sandbox.Sandbox, limits: sandbox.Limits) -> None:
    with pytest.raises(QueryTimeout) as caught:  # a count streamed over 10^12 rows: time, never memory
        sandbox.run(box, "SELECT count(*) FROM range(1000000) a, range(1000000) b", limits)
    assert caught.value.timeout_s == 2 and str(caught.value) == "query stopped at its time limit of 2 s"
    again = pickle.loads(pickle.dumps(caught.value))  # as it comes back from a query's child process
    assert isinstance(again, QueryTimeout) and str(again) == str(caught.value)
    with pytest.raises(sandbox.QueryError) as other:
        sandbox.run(box, "SELECT no_such_column FROM sources", limits)
    assert not isinstance(other.value, QueryTimeout)


def test_row_limit(box: sandbox.Sandbox, limits: sandbox.Limits) -> None:
    with pytest.raises(sandbox.QueryError, match="more than 1000 rows"):
        sandbox.run(box, "SELECT * FROM range(5000)", limits)


def test_the_connection_itself_is_locked(box: sandbox.Sandbox) -> None:
    """Beyond the checks on the query text, the connection's own settings refuse files and configuration."""
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        box.con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        box.con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.CatalogException):
        box.con.sql("SELECT * FROM secret_table").fetchall()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", 'syntax error at or near "SELEC"\nline 1, column 1:\n  SELEC 1\n  ^'),
        (
            "SELECT diaSourceId\nFROM sources\nWHERE psfFlux > > 3",
            'syntax error at or near ">"\nline 3, column 17:\n  WHERE psfFlux > > 3\n                  ^',
        ),
        ("SELECT nosuchcolumn FROM sources", 'Referenced column "nosuchcolumn" not found'),
        ("SELECT * FROM objcts", "unknown table objcts: the tables are annotations, area_hits, context,"),
        ("", "empty query"),
    ],
)
def test_invalid_sql_points_at_the_problem(
    box: sandbox.Sandbox, limits: sandbox.Limits, sql: str, message: str
) -> None:
    with pytest.raises(sandbox.QueryError) as caught:
        sandbox.run(box, sql, limits)
    assert message in str(caught.value)
    assert "Error:" not in str(caught.value)  # no engine error classes


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT list_sum(range(500000000)) AS n",  # one 4 GB allocation, outside DuckDB's buffer manager
        "SELECT length(repeat('x', 4000000000)) AS n",
    ],
)
def test_memory_bombs_fail_cleanly_under_the_process_cap(sql: str, home: Path) -> None:
    """``nightjar query`` caps its own memory: an allocation beyond it fails the query, not the machine."""

    # Should the cap be broken, the bomb must still not take the shared machine: a 12 GiB address-space limit, set
    # by a fresh interpreter that then becomes the CLI (not by preexec_fn: Python code run in a fork of the
    # many-threaded test process can crash there, and did).
    safety_net = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30)); "
        "os.execv(sys.executable, [sys.executable, '-m', 'nightjar.cli', *sys.argv[1:]])"
    )
    # A cap of 3 GiB: pyarrow's allocator (mimalloc 3) reserves a 1 GiB arena that the data limit counts, and under
    # 1.5 GiB the query sometimes could not even start its watchdog thread ("can't start new thread").
    env = {**os.environ, "NIGHTJAR_HOME": str(home), "NIGHTJAR_PROCESS_MEMORY_CAP": "3GiB"}
    done = subprocess.run(
        [sys.executable, "-c", safety_net, "query", sql, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout[-300:] + done.stderr[-2000:]
    assert "memory limit" in done.stderr
