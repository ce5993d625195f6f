"""Compile many streaming filters into few DuckDB passes.

A *simple* filter is a plain ``SELECT <expressions> FROM <view> [alias] [WHERE <condition>]`` with no grouping,
window, ordering or limit. All simple filters over the same view (and alias) share one pass: the pass computes
every distinct top-level conjunct of their WHERE clauses as a boolean column and every distinct select expression
once, over every row of the view; each filter's matches are then the rows where all of its conjuncts are true,
which numpy finds without going back to DuckDB. Conditions shared by many filters (``band = 'r'``) cost once.

Anything else (joins, CTEs, aggregates, window functions, DISTINCT, LIMIT…) runs as its own query.

Examples
--------
>>> from nightjar.sql import views
>>> plan = compile_filters(
...     (FilterSpec(1, 1, "SELECT diaSourceId FROM sources WHERE psfFlux > 10 AND band = 'r'"),
...      FilterSpec(2, 1, "SELECT diaSourceId, psfFlux FROM sources WHERE band = 'r'")),
...     views.schemas_of(views.with_placeholders({})))
>>> len(plan.groups), len(plan.groups[0].conjuncts)
(1, 2)
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from nightjar.sql import sandbox, views
from nightjar.sql.parse import Node, Parsed, QueryError, expression_sql, validate

PREFIX = "__nj_"  # internal column names of a pass; never shown to users


@dataclass(frozen=True)
class FilterSpec:
    """What the compiler needs of a filter: identity (for caching) and its SQL."""

    id: int
    version: int
    sql: str


@dataclass(frozen=True)
class Member:
    """One simple filter inside a pass: which conjunct and expression columns are its, and its column names."""

    index: int  # position of the filter in the compiled list
    conjuncts: tuple[int, ...]
    expressions: tuple[int, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    """One DuckDB pass over one view for many simple filters."""

    view: str
    alias: str
    conjuncts: tuple[str, ...]
    expressions: tuple[str, ...]
    members: tuple[Member, ...]

    def _keys_and_source(self) -> tuple[list[str], str]:
        ref = _quote(self.alias or self.view)
        object_key, source_key = views.ROW_KEYS.get(self.view, ("diaObjectId", None))
        columns = [
            f"{ref}.{_quote(object_key)} AS {PREFIX}object",
            f"{ref}.{_quote(source_key)} AS {PREFIX}source" if source_key else f"NULL::BIGINT AS {PREFIX}source",
        ]
        return columns, _quote(self.view) + (f" AS {_quote(self.alias)}" if self.alias else "")

    def sql(self, members: Sequence[Member] | None = None) -> str:
        """The pass's query: every conjunct and expression of ``members`` (default: all) over every row."""
        chosen = self.members if members is None else members
        conj = sorted({c for m in chosen for c in m.conjuncts})
        exprs = sorted({e for m in chosen for e in m.expressions})
        columns, source = self._keys_and_source()
        columns += [f"coalesce(({self.conjuncts[c]}), false) AS {PREFIX}c{c}" for c in conj]
        columns += [f"({self.expressions[e]}) AS {PREFIX}e{e}" for e in exprs]
        return f"SELECT {', '.join(columns)} FROM {source}"

    def member_sql(self, member: Member) -> str:
        """One filter as written (its WHERE filters the rows before its expressions are computed), with keys."""
        columns, source = self._keys_and_source()
        columns += [f"({self.expressions[e]}) AS {PREFIX}e{e}" for e in sorted(set(member.expressions))]
        where = " AND ".join(f"({self.conjuncts[c]})" for c in member.conjuncts) or "true"
        return f"SELECT {', '.join(columns)} FROM {source} WHERE {where}"


@dataclass
class Plan:
    """How to run a list of filters: shared passes, queries run alone, and filters refused before running."""

    groups: list[Group] = field(default_factory=list)
    solos: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def passes(self) -> int:
        """The DuckDB passes the plan takes: one per shared group, one per query run alone."""
        return len(self.groups) + len(self.solos)


@dataclass(frozen=True)
class _Simple:
    index: int
    view: str
    alias: str
    conjuncts: list[Node]
    outputs: list[tuple[str, Node | str]]  # (name, parsed expression or ready SQL text)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schemas_key(schemas: Mapping[str, pa.Schema]) -> tuple[tuple[str, str], ...]:
    """A hashable fingerprint of view schemas (the compile cache's key)."""
    return tuple((name, schema.to_string(show_schema_metadata=False)) for name, schema in sorted(schemas.items()))


@functools.cache
def _aggregate_names() -> frozenset[str]:
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE function_type = 'aggregate'"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows)


def _top_level(expr: Node) -> list[Node]:
    """The nodes of an expression outside its subqueries (which are whole queries of their own)."""
    found: list[Node] = []
    stack: list[object] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            if item.get("class") == "SUBQUERY":
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _row_wise(expr: Node, columns: set[str], aliases: set[str]) -> bool:
    """True when the expression is computed row by row over the view (no aggregate, window or star)."""
    aggregates = _aggregate_names()
    for node in _top_level(expr):
        cls = node.get("class")
        if cls in ("WINDOW", "STAR", "PARAMETER", "LAMBDA_REF"):
            return False
        if cls == "FUNCTION" and str(node.get("function_name", "")).lower() in aggregates:
            return False
        if cls == "COLUMN_REF":
            names = node.get("column_names") or []
            # A bare name that is not a view column is a select alias used in WHERE (DuckDB allows it) or a typo.
            if len(names) == 1 and str(names[0]).lower() not in columns:
                return False
            if len(names) == 1 and str(names[0]).lower() in aliases:
                return False
    return True


def _conjuncts(where: Node | None) -> list[Node]:
    if where is None:
        return []
    if where.get("class") == "CONJUNCTION" and where.get("type") == "CONJUNCTION_AND":
        return [c for child in where.get("children", []) for c in _conjuncts(child)]
    return [where]


def _classify(index: int, node: Node, schemas: Mapping[str, pa.Schema]) -> _Simple | None:
    """The filter as a simple one, or None when it must run as its own query."""
    if node.get("type") != "SELECT_NODE" or node.get("modifiers") or (node.get("cte_map") or {}).get("map"):
        return None
    if node.get("group_expressions") or node.get("group_sets") or node.get("having") or node.get("qualify"):
        return None
    if node.get("sample") or node.get("aggregate_handling") != "STANDARD_HANDLING":
        return None
    table = node.get("from_table") or {}
    if table.get("type") != "BASE_TABLE" or table.get("sample") or table.get("column_name_alias"):
        return None
    view = str(table.get("table_name", "")).lower()
    if view not in schemas or table.get("schema_name") or table.get("catalog_name"):
        return None
    alias = str(table.get("alias") or "")
    schema = schemas[view]
    columns = {n.lower() for n in schema.names}
    select = node.get("select_list") or []
    aliases = {str(e.get("alias")).lower() for e in select if e.get("alias")} - columns
    outputs: list[tuple[str, Node | str]] = []
    for expr in select:
        if expr.get("class") == "STAR":
            plain = not (expr.get("columns") or expr.get("exclude_list") or expr.get("replace_list"))
            plain = plain and not (expr.get("rename_list") or expr.get("qualified_exclude_list") or expr.get("expr"))
            if not plain or str(expr.get("relation_name") or "").lower() not in ("", alias.lower(), view):
                return None
            ref = _quote(alias or view)
            outputs.extend((name, f"{ref}.{_quote(name)}") for name in schema.names)
            continue
        if not _row_wise(expr, columns, aliases):
            return None
        outputs.append(("", expr))
    conjuncts = _conjuncts(node.get("where_clause"))
    if not all(_row_wise(c, columns, aliases) for c in conjuncts):
        return None
    return _Simple(index, view, alias, conjuncts, outputs)


def _name(expr: Node, text: str) -> str:
    """The column name DuckDB gives a select expression: its alias, a column's own name, else its text."""
    if expr.get("alias"):
        return str(expr["alias"])
    if expr.get("class") == "COLUMN_REF":
        return str(expr["column_names"][-1])
    return text


def parse_all(con: duckdb.DuckDBPyConnection, sqls: Sequence[str]) -> list[Node | str]:
    """Each SQL text's SELECT node, or the reason it cannot be a filter; one round trip for all."""
    texts = [s.strip().rstrip(";") for s in sqls]
    rows = con.execute(
        "SELECT json_serialize_sql(q) FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(q, i) ORDER BY i", [texts]
    ).fetchall()
    out: list[Node | str] = []
    for (doc,) in rows:
        tree = json.loads(doc)
        if tree.get("error"):
            out.append(str(tree.get("error_message", "cannot parse the query")))
        elif len(tree["statements"]) != 1:
            out.append(f"expected exactly one SELECT statement, got {len(tree['statements'])}")
        else:
            out.append(tree["statements"][0]["node"])
    return out


def compile_filters(specs: Sequence[FilterSpec], schemas: Mapping[str, pa.Schema]) -> Plan:
    """The plan of ``specs`` over views with these ``schemas``.

    Compiling 1,000 filters takes about a second, so plans are cached: the same filters over the same schemas
    (every batch, on a worker, until a filter changes) compile once.
    """
    key = (tuple(specs), schemas_key(schemas))
    with _PLANS_LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    plan = _compile(key[0], dict(schemas))
    with _PLANS_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return plan


_PLAN_CACHE_SIZE = 8
_PLANS_LOCK = threading.Lock()
_PLANS: OrderedDict[tuple[tuple[FilterSpec, ...], tuple[tuple[str, str], ...]], Plan] = OrderedDict()


def _compile(specs: tuple[FilterSpec, ...], schemas: dict[str, pa.Schema]) -> Plan:
    plan = Plan()
    box = sandbox.connect({name: schema.empty_table() for name, schema in schemas.items()}, sandbox.Limits())
    try:
        simples: list[_Simple] = []
        for index, (spec, node) in enumerate(zip(specs, parse_all(box.con, [s.sql for s in specs]), strict=True)):
            if isinstance(node, str):
                plan.errors[index] = node
                continue
            try:
                validate(Parsed(spec.sql, node), tuple(schemas))
            except QueryError as exc:
                plan.errors[index] = str(exc)
                continue
            simple = _classify(index, node, schemas)
            if simple is None:
                plan.solos.append(index)
            else:
                simples.append(simple)
        plan.groups, demoted = _group(box.con, simples)
        plan.solos = sorted(plan.solos + demoted)
    finally:
        box.close()
    return plan


def _group(con: duckdb.DuckDBPyConnection, simples: list[_Simple]) -> tuple[list[Group], list[int]]:
    """Simple filters gathered into one group per (view, alias); those with clashing column names run alone."""
    # Print every parsed expression back to SQL in one round trip.
    nodes = [c for s in simples for c in s.conjuncts] + [
        e for s in simples for _, e in s.outputs if isinstance(e, dict)
    ]
    texts = expression_sql(con, nodes)
    n_conj = sum(len(s.conjuncts) for s in simples)
    conj_iter, expr_iter = iter(texts[:n_conj]), iter(texts[n_conj:])
    conj_text = [[next(conj_iter) for _ in s.conjuncts] for s in simples]
    out_text = [[next(expr_iter) if isinstance(e, dict) else e for _, e in s.outputs] for s in simples]

    by_shape: dict[tuple[str, str], list[int]] = {}
    demoted: list[int] = []
    for k, s in enumerate(simples):
        by_shape.setdefault((s.view, s.alias), []).append(k)
    groups = []
    for (view, alias), ks in by_shape.items():
        conj_index: dict[str, int] = {}
        expr_index: dict[str, int] = {}
        members = []
        for k in ks:
            s = simples[k]
            names = tuple(
                _name(expr, text) if isinstance(expr, dict) else name
                for (name, expr), text in zip(s.outputs, out_text[k], strict=True)
            )
            if len({n.lower() for n in names}) != len(names):
                demoted.append(s.index)  # DuckDB renames duplicate columns: let it, in a query of its own
                continue
            conj = tuple(dict.fromkeys(conj_index.setdefault(t, len(conj_index)) for t in conj_text[k]))
            exprs = tuple(expr_index.setdefault(t, len(expr_index)) for t in out_text[k])
            members.append(Member(s.index, conj, exprs, names))
        groups.extend(_split_wide(Group(view, alias, tuple(conj_index), tuple(expr_index), tuple(members))))
    return groups, demoted


MAX_PASS_COLUMNS = 256


def _split_wide(group: Group) -> list[Group]:
    """Cut a group whose pass would be very wide into passes of about ``MAX_PASS_COLUMNS`` columns.

    One projection of a thousand columns costs about twice the CPU of four of 250 (a chunk of every column no
    longer fits the caches), so "as few passes as possible" stops at a few hundred columns per pass.
    """
    if not group.members:
        return []
    ordered = sorted(group.members, key=lambda m: (m.conjuncts[:1], m.expressions))
    chunks: list[list[Member]] = [[]]
    seen: set[tuple[str, int]] = set()
    for member in ordered:
        new = {("c", c) for c in member.conjuncts} | {("e", e) for e in member.expressions}
        if chunks[-1] and len(seen | new) > MAX_PASS_COLUMNS:
            chunks.append([])
            seen = set()
        chunks[-1].append(member)
        seen |= new
    return [Group(group.view, group.alias, group.conjuncts, group.expressions, tuple(c)) for c in chunks]
