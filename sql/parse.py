"""User SQL as DuckDB's own parse tree: one SELECT, over Nightjar's tables only, with errors that point at the problem.

DuckDB parses the text (``json_serialize_sql``); the tree is then walked to check what the query reads. This is not
the sandbox (the connection's settings are), it is a second wall with clear messages: a table that is not one of
the views, a system catalogue, a file-reading table function or a function that reads the configuration is named
in the error, with the position of the offending text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from nightjar.errors import UserError


class QueryError(UserError):
    """User SQL that is not allowed, does not parse, fails, or runs past its limit."""


class QueryTimeout(QueryError):
    """User SQL stopped at its time limit (``timeout_s`` seconds)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"query stopped at its time limit of {timeout_s:g} s")
        self.timeout_s = timeout_s

    def __reduce__(self) -> tuple[type[QueryTimeout], tuple[float]]:  # pickles (from a query's child process)
        return QueryTimeout, (self.timeout_s,)


Node = dict[str, Any]

# Table functions a query may call: they make rows from their arguments and touch nothing else.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "generate_subscripts"})
# Scalar functions that read the engine's state (configuration, the text of the running query, which in a
# combined filter pass holds other users' filters), write logs or sleep. The sandbox settings stop files and
# the network; these would leak internals or waste a thread.
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getvariable",
        "getenv",
        "current_query",
        "current_schemas",
        "in_search_path",
        "nextval",
        "currval",
        "current_query_id",
        "current_connection_id",
        "current_transaction_id",
        "txid_current",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "json_execute_serialized_sql",
        "write_log",
        "parse_duckdb_log_message",
        "sleep_ms",
        "pg_sleep",
    }
)
ALLOWED_SHOW = frozenset({"DESCRIBE", "SUMMARY"})
NO_LOCATION = 2**64 - 1


@dataclass(frozen=True)
class Parsed:
    """One parsed SELECT: its text and DuckDB's tree (``statements[0]["node"]``)."""

    sql: str
    node: Node


def parse(con: duckdb.DuckDBPyConnection, sql: str) -> Parsed:
    """Parse ``sql`` as exactly one SELECT; a QueryError with the position of a syntax error otherwise.

    Examples
    --------
    >>> import duckdb
    >>> parse(duckdb.connect(), "SELECT 1 AS one").node["select_list"][0]["alias"]
    'one'
    """
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty query: write one SELECT statement")
    rows = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [text]).fetchall()
    tree = json.loads(rows[0][0])
    if tree.get("error") and tree.get("error_type") == "parser":
        message = clean_message(tree.get("error_message", "cannot parse the query"))
        raise QueryError(_with_position(message, text, tree.get("position")))
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(clean_message(str(exc))) from None
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SELECT statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed, not {kind.name}")
    if tree.get("error"):
        message = tree.get("error_message", "cannot parse the query")
        if "Only SELECT" in message:
            raise QueryError("this statement form is not supported: write a plain SELECT (PIVOT: use GROUP BY)")
        raise QueryError(_with_position(clean_message(message), text, tree.get("position")))
    return Parsed(text, tree["statements"][0]["node"])


def _with_position(message: str, sql: str, position: Any) -> str:
    try:
        pos = int(position)
    except (TypeError, ValueError):
        return message
    return f"{message}\n{pointer(sql, pos)}"


def pointer(sql: str, pos: int) -> str:
    """The line of ``sql`` holding character ``pos``, with a caret under it and its line and column."""
    if pos < 0 or pos > len(sql):
        return ""
    line_start = sql.rfind("\n", 0, pos) + 1
    line_end = sql.find("\n", pos)
    line = sql[line_start : line_end if line_end >= 0 else len(sql)]
    line_no = sql.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    return f"line {line_no}, column {column}:\n  {line}\n  {' ' * (column - 1)}^"


def clean_message(message: str) -> str:
    """DuckDB's message without engine internals: error class prefixes, the temp schema, and "Did you mean"
    hints (which can name system tables); the ``LINE n:`` excerpt of the user's query is kept."""
    text = _ERROR_CLASS.sub("", message)
    text = _DID_YOU_MEAN.sub("", text)
    return text.replace("temp.main.", "").replace("__nj_", "").strip()


_ERROR_CLASS = re.compile(r"^(?:[A-Z][A-Za-z ]*?Error|TransactionContext Error): ", re.MULTILINE)
_DID_YOU_MEAN = re.compile(r"!?\s*Did you mean [^\n]*")


def walk(node: Any) -> Iterator[Node]:
    """Every dict in a parse tree, depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _cte_entries(node: Node) -> list[tuple[str, Any]]:
    cte_map = node.get("cte_map")
    if not isinstance(cte_map, dict):
        return []
    return [(str(entry["key"]).lower(), entry.get("value")) for entry in cte_map.get("map", [])]


def resolved(node: Node) -> Iterator[tuple[Node, frozenset[str]]]:
    """Every dict of a parse tree with the CTE names in scope where it stands, as DuckDB binds them.

    A CTE is visible in the body of the query that defines it (subqueries included) and in the CTEs defined
    after it in the same WITH, never in its own body or in earlier ones; a recursive CTE sees itself in its
    recursive term (the right side of its UNION) only. A name that is not in scope is a catalogue lookup, so
    ``SELECT * FROM (WITH pg_settings AS (...) SELECT 1) t, pg_settings`` reads the system table.
    """
    stack: list[tuple[Any, frozenset[str]]] = [(node, frozenset())]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, list):
            stack.extend((child, scope) for child in reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        yield item, scope
        entries = _cte_entries(item)
        inner = scope | {name for name, _ in entries}
        later: list[tuple[Any, frozenset[str]]] = []
        seen = scope
        for name, value in entries:
            later.append((value, seen))
            seen = seen | {name}
        for key, value in item.items():
            if key == "cte_map":
                continue
            if item.get("type") == "RECURSIVE_CTE_NODE" and key == "right":
                later.append((value, inner | {str(item.get("cte_name", "")).lower()}))
            else:
                later.append((value, inner))
        stack.extend(reversed(later))


def validate(parsed: Parsed, tables: Sequence[str]) -> None:
    """Refuse a query that reads anything but ``tables``, the CTEs in scope and row-making table functions.

    Names are resolved by scope (``resolved``): a CTE defined in one subquery does not make its name safe
    elsewhere. This is the check with clear messages; ``sandbox.confine`` then checks the bound plan.
    """
    views = {t.lower() for t in tables}
    listing = ", ".join(sorted(tables))
    for item, scope in resolved(parsed.node):
        kind = item.get("type")
        where = _where(parsed.sql, item)
        if kind == "BASE_TABLE":
            name = str(item.get("table_name", ""))
            path = (item.get("qualified_name") or {}).get("path") or [name]
            if item.get("schema_name") or item.get("catalog_name") or len(path) > 1:
                qualified = ".".join(str(p) for p in path) if len(path) > 1 else name
                raise QueryError(f"unknown table {qualified}: the tables are {listing}{where}")
            if name.lower() not in views and name.lower() not in scope:
                raise QueryError(f"unknown table {name}: the tables are {listing}{where}")
            if item.get("at_clause"):
                raise QueryError(f"AT (...) is not supported: use the as_of option for time travel{where}")
        elif kind == "TABLE_FUNCTION":
            function = item.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            path = (function.get("qualified_name") or {}).get("path") or [name]
            if (
                name not in ALLOWED_TABLE_FUNCTIONS
                or function.get("schema")
                or function.get("catalog")
                or len(path) > 1
            ):
                raise QueryError(
                    f"table function {name}() is not available: queries read the tables {listing} "
                    f"(and may use {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}){where}"
                )
        elif kind == "SHOW_REF":
            target = str(item.get("table_name") or "").lower()
            if item.get("show_type") not in ALLOWED_SHOW or (target and target not in views | scope):
                raise QueryError(f"SHOW is not available: the tables are {listing}")
        elif item.get("class") in ("FUNCTION", "WINDOW") and "function_name" in item:
            name = str(item["function_name"]).lower()
            path = (item.get("qualified_name") or {}).get("path") or [name]
            if name in DENIED_FUNCTIONS:
                raise QueryError(f"function {name}() is not available in user queries{where}")
            if item.get("schema") or item.get("catalog") or len(path) > 1:
                raise QueryError(f"qualified function names are not available: {name}(){where}")


@functools.lru_cache(maxsize=4096)
def tables_read(sql: str) -> frozenset[str]:
    """The tables (lower case, CTEs excluded) a query reads; empty when it does not parse. Cached: the pipeline
    asks it of every filter in every batch.

    Examples
    --------
    >>> sorted(tables_read("SELECT * FROM objects o JOIN annotations a USING (diaObjectId)"))
    ['annotations', 'objects']
    """
    con = duckdb.connect()
    try:
        node = parse(con, sql).node
    except QueryError:
        return frozenset()
    finally:
        con.close()
    return frozenset(
        str(i.get("table_name", "")).lower()
        for i, scope in resolved(node)
        if i.get("type") == "BASE_TABLE" and str(i.get("table_name", "")).lower() not in scope
    )


def _where(sql: str, item: Node) -> str:
    pos = item.get("query_location")
    if not isinstance(pos, int) or pos == NO_LOCATION or pos > len(sql):
        return ""
    return f"\n{pointer(sql, pos)}"


def expression_sql(con: duckdb.DuckDBPyConnection, expressions: Sequence[Node]) -> list[str]:
    """The SQL text of parsed expressions (DuckDB prints them back), in one round trip."""
    if not expressions:
        return []
    documents = [
        json.dumps(
            {
                "error": False,
                "statements": [
                    {
                        "node": {
                            "type": "SELECT_NODE",
                            "modifiers": [],
                            "cte_map": {"map": []},
                            "select_list": [{**expr, "alias": ""}],
                            "from_table": {
                                "type": "EMPTY",
                                "alias": "",
                                "sample": None,
                                "query_location": NO_LOCATION,
                                "query_location_length": 0,
                            },
                            "where_clause": None,
                            "group_expressions": [],
                            "group_sets": [],
                            "aggregate_handling": "STANDARD_HANDLING",
                            "having": None,
                            "sample": None,
                            "qualify": None,
                        },
                        "named_param_map": [],
                    }
                ],
            }
        )
        for expr in expressions
    ]
    rows = con.execute(
        "SELECT json_deserialize_sql(d::JSON) FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(d, i) ORDER BY i",
        [documents],
    ).fetchall()
    return [str(r[0]).removeprefix("SELECT ") for r in rows]
