from __future__ import annotations

import pyarrow as pa
import pytest

from nightjar.sql import sandbox

LIMITS = sandbox.Limits(memory="256MB", threads=1, timeout_s=2.0, max_rows=1000)


@pytest.fixture
def con():
    views = {"sources": pa.table({"diaSourceId": pa.array([1, 2, 3], pa.int64()), "psfFlux": [1.0, 5.0, 9.0]})}
    connection = sandbox.connect(views, LIMITS)
    yield connection
    connection.close()


def test_select_over_views(con) -> None:
    out = sandbox.run(con, "SELECT diaSourceId FROM sources WHERE psfFlux > 2 ORDER BY 1", LIMITS)
    assert out["diaSourceId"].to_pylist() == [2, 3]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("SELECT * FROM '/etc/passwd'", "does not exist"),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", "only SELECT"),
        ("ATTACH '/tmp/x.db' AS x", "only SELECT"),
        ("INSTALL httpfs", "only SELECT"),
        ("SET enable_external_access = true", "only SELECT"),
        ("SELECT 1; SELECT 2", "exactly one SELECT"),
        ("SELECT * FROM LIMITS", "LIMITS"),
        ("SELEC 1", "syntax error"),
    ],
)
def test_escapes_and_bad_sql_are_refused(con, sql: str, message: str) -> None:
    with pytest.raises(sandbox.QueryError, match=message):
        sandbox.run(con, sql, LIMITS)


def test_watchdog_stops_long_queries(con) -> None:
    with pytest.raises(sandbox.QueryError, match="time limit of 2 s"):
        sandbox.run(con, "SELECT count(*) FROM range(100000000000) a", LIMITS)


def test_row_limit(con) -> None:
    with pytest.raises(sandbox.QueryError, match="more than 1000 rows"):
        sandbox.run(con, "SELECT * FROM range(5000)", LIMITS)
