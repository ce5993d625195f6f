"""A DuckDB connection for untrusted SQL.

Order matters: the data views are registered first, then external access and replacement scans are turned off,
memory, threads and temp space are capped, and the configuration is locked. A query must be one SELECT; a
watchdog interrupts it at its time limit.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

READ_ONLY_TYPES = {duckdb.StatementType.SELECT}


class QueryError(ValueError):
    """User SQL that is not allowed, does not parse, fails, or runs past its limit."""


@dataclass(frozen=True)
class Limits:
    memory: str = "2GB"
    threads: int = 2
    timeout_s: float = 60.0
    max_rows: int = 100_000
    temp_dir: Path | None = None
    temp_dir_limit: str = "2GB"


def connect(views: Mapping[str, Any], limits: Limits) -> duckdb.DuckDBPyConnection:
    """A locked-down connection where each name in ``views`` is a view over an Arrow table or dataset."""
    con = duckdb.connect(":memory:")
    for name, data in views.items():
        con.register(f"__data_{name}", data)
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "__data_{name}"')
    if limits.temp_dir is not None:
        limits.temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = '{limits.temp_dir}'")
        con.execute(f"SET max_temp_directory_size = '{limits.temp_dir_limit}'")
    con.execute(f"SET memory_limit = '{limits.memory}'")
    con.execute(f"SET threads = {int(limits.threads)}")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
    return con


def check_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The statement of ``sql`` if it is exactly one SELECT; a QueryError saying what is wrong otherwise."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_clean(exc)) from None
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SELECT statement, got {len(statements)}")
    statement = statements[0]
    if statement.type not in READ_ONLY_TYPES:
        raise QueryError(f"only SELECT queries are allowed, not {statement.type.name}")
    return sql.strip().rstrip(";")


def run(con: duckdb.DuckDBPyConnection, sql: str, limits: Limits) -> pa.Table:
    """Run one user SELECT under the time and row limits and return the result as Arrow."""
    query = check_select(con, sql)
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    timer.start()
    try:
        reader = con.sql(query).to_arrow_reader(min(limits.max_rows + 1, 1_000_000))
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows > limits.max_rows:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        raise QueryError(f"query stopped at its time limit of {limits.timeout_s:g} s") from None
    except duckdb.Error as exc:
        if not timer.is_alive():
            raise QueryError(f"query stopped at its time limit of {limits.timeout_s:g} s") from None
        raise QueryError(_clean(exc)) from None
    finally:
        timer.cancel()
    if table.num_rows > limits.max_rows:
        raise QueryError(f"the result has more than {limits.max_rows} rows: add a LIMIT or narrow the query")
    return table


def _clean(exc: duckdb.Error) -> str:
    """DuckDB's message without internal view names."""
    return str(exc).replace("__data_", "")
