"""A DuckDB connection for untrusted SQL, and running one user SELECT on it under time and row limits.

Order matters: the data views and helper functions are registered first, then replacement scans (reading Python
variables by name), external access (files, network, extensions) and extension auto-loading are turned off,
memory, threads and temp space are capped, and the configuration is locked. A query must be one SELECT over the
views (``parse.validate``); a watchdog interrupts it at its time limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from nightjar.sql import functions
from nightjar.sql.parse import Parsed, QueryError, QueryTimeout, clean_message, parse, validate

__all__ = ["Limits", "QueryError", "connect", "run", "watchdog"]


@dataclass(frozen=True)
class Limits:
    """What one user query may use: memory, threads, wall time, result rows and temp space."""

    memory: str = "2GB"
    threads: int = 2
    timeout_s: float = 60.0
    max_rows: int = 100_000
    temp_dir: Path | None = None
    temp_dir_limit: str = "2GB"

    def with_timeout(self, timeout_s: float) -> Limits:
        """These limits with another time limit."""
        return replace(self, timeout_s=timeout_s)


@dataclass
class Sandbox:
    """A locked connection and the names of the tables it serves.

    With ``statements`` (a dict), queries are prepared once and executed by name afterwards: a connection that
    runs the same filters on every batch binds them once.
    """

    con: duckdb.DuckDBPyConnection
    tables: tuple[str, ...]
    statements: dict[str, str] | None = None
    prepared_count: int = 0
    checked: dict[str, Parsed] = field(default_factory=dict)

    def close(self) -> None:
        self.con.close()

    def runnable(self, sql: str) -> str:
        """``sql``, or ``EXECUTE`` of its prepared statement when this sandbox prepares queries; its plan is
        confined to the sandbox's tables first (once per prepared statement)."""
        if self.statements is None:
            confine(self, sql)
            return sql
        name = self.statements.get(sql)
        if name is None:
            confine(self, sql)
            if len(self.statements) >= MAX_PREPARED:
                for old in self.statements.values():
                    self.con.execute(f"DEALLOCATE {old}")
                self.statements.clear()
                self.checked.clear()
            self.prepared_count += 1
            name = f"__nj_p{self.prepared_count}"
            self.con.execute(f"PREPARE {name} AS {sql}")
            self.statements[sql] = name
        return f"EXECUTE {name}"


MAX_PREPARED = 1000

# Leaf operators of a bound plan that make rows from the query itself (constants, CTEs, unnested lists).
ROWLESS_SCANS = frozenset(
    {
        "DUMMY_SCAN",
        "EMPTY_RESULT",
        "COLUMN_DATA_SCAN",
        "CTE_SCAN",
        "DELIM_SCAN",
        "CHUNK_SCAN",
        "RECURSIVE_CTE_SCAN",
        "RECURSIVE_RECURRING_CTE_SCAN",
        "REC_CTE_SCAN",
        "REC_REC_CTE_SCAN",
        "EXPRESSION_SCAN",
    }
)
# Table functions a plan may scan: the registered Arrow views and the row-making functions.
SCAN_FUNCTIONS = frozenset(
    {"PYTHON_ARROW_SCAN", "ARROW_SCAN", "ARROW_SCAN_DUMB", "RANGE", "GENERATE_SERIES", "UNNEST", "SEQ_SCAN"}
)
_MAIN = "memory.main."


def confine(box: Sandbox, sql: str) -> None:
    """Refuse ``sql`` unless its bound plan reads only the sandbox's tables: the wall behind ``parse.validate``.

    The system catalogue (``pg_settings``, ``duckdb_*()``, ``information_schema``, ``pg_prepared_statements``,
    ``sqlite_master``) is reached through table functions, directly or inside built-in macros such as
    ``pg_get_viewdef``; whatever name reached it, the plan shows the function. Every scan in the plan must be a
    registered view (an Arrow scan), one of the sandbox's own tables, or a row-making function.
    """
    try:
        rows = box.con.execute(f"EXPLAIN (FORMAT json) {sql}").fetchall()
    except duckdb.Error as exc:
        raise QueryError(clean_message(str(exc))) from None
    own = {f"{_MAIN}{t}".lower() for t in box.tables}
    for _, text in rows:
        stack: list[Any] = [json.loads(text)]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
                continue
            if not isinstance(item, dict):
                continue
            children = item.get("children") or []
            stack.extend(children)
            info = item.get("extra_info") or {}
            function = str(info.get("Function", "")).upper() if isinstance(info, dict) else ""
            table = str(info.get("Table", "")).lower() if isinstance(info, dict) else ""
            name = str(item.get("name", "")).strip().upper()
            if function and function not in SCAN_FUNCTIONS:
                raise QueryError(f"the query reads {function.lower()}, which is not one of the tables {_listing(box)}")
            if table and table not in own:
                raise QueryError(f"the query reads {table.removeprefix(_MAIN)}, not one of the tables {_listing(box)}")
            if not children and not function and not table and name not in ROWLESS_SCANS:
                raise QueryError(f"the query reads {name.lower()}, which is not one of the tables {_listing(box)}")


def _listing(box: Sandbox) -> str:
    return ", ".join(sorted(box.tables))


def connect(views: Mapping[str, Any], limits: Limits) -> Sandbox:
    """A locked-down connection where each name in ``views`` is a table (an Arrow table, reader or dataset)."""
    con = duckdb.connect(":memory:")
    try:
        for name, data in views.items():
            con.register(name, data)
        functions.install(con)
        harden(con, limits)
    except BaseException:
        con.close()
        raise
    return Sandbox(con, tuple(views))


def harden(con: duckdb.DuckDBPyConnection, limits: Limits, cursors: Sequence[duckdb.DuckDBPyConnection] = ()) -> None:
    """Cap and lock a database whose data and functions are in place; ``cursors`` are its other connections.

    Replacement scans are a per-connection setting, so each cursor turns them off before the lock.
    """
    if limits.temp_dir is not None:
        limits.temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(limits.temp_dir)])
        con.execute("SET max_temp_directory_size = ?", [limits.temp_dir_limit])
    con.execute("SET memory_limit = ?", [limits.memory])
    con.execute(f"SET threads = {int(limits.threads)}")
    for connection in (con, *cursors):
        connection.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET lock_configuration = true")


def check(box: Sandbox, sql: str) -> Parsed:
    """``sql`` parsed and checked: one SELECT reading only the sandbox's tables (remembered when preparing)."""
    if box.statements is not None and sql in box.checked:
        return box.checked[sql]
    parsed = parse(box.con, sql)
    validate(parsed, box.tables)
    if box.statements is not None:
        box.checked[sql] = parsed
    return parsed


@contextmanager
def watchdog(con: duckdb.DuckDBPyConnection, timeout_s: float) -> Iterator[threading.Event]:
    """Interrupt whatever ``con`` runs after ``timeout_s`` seconds; the event tells whether it fired."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def execute(box: Sandbox, sql: str, limits: Limits) -> pa.Table:
    """Run trusted SQL text (built by Nightjar from checked user expressions) under the time and row limits."""
    with watchdog(box.con, limits.timeout_s) as fired:
        try:
            reader = box.con.sql(box.runnable(sql)).to_arrow_reader(min(limits.max_rows + 1, 1_000_000))
            batches, rows = [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows > limits.max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except (duckdb.InterruptException, KeyboardInterrupt):
            raise QueryTimeout(limits.timeout_s) from None
        except duckdb.OutOfMemoryException:
            raise QueryError(
                f"query stopped: it needs more than its memory limit of {limits.memory} "
                "(and its temp space); narrow it, aggregate, or add a LIMIT"
            ) from None
        except duckdb.Error as exc:
            if fired.is_set():
                raise QueryTimeout(limits.timeout_s) from None
            raise QueryError(clean_message(str(exc))) from None
    if table.num_rows > limits.max_rows:
        raise QueryError(f"the result has more than {limits.max_rows} rows: add a LIMIT or narrow the query")
    return table


def run(box: Sandbox, sql: str, limits: Limits) -> pa.Table:
    """Check and run one user SELECT; the result as Arrow.

    Examples
    --------
    >>> import pyarrow as pa
    >>> box = connect({"sources": pa.table({"psfFlux": [1.0, 5.0]})}, Limits(timeout_s=5))
    >>> run(box, "SELECT count(*) AS n FROM sources WHERE psfFlux > 2", Limits(timeout_s=5))["n"].to_pylist()
    [1]
    """
    parsed = check(box, sql)
    return execute(box, parsed.sql, limits)
